"""Hooks of the `foam` plugin: landmark encodings, progressive G / D, the FOAM algorithm, presets."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    from genfw.plugins.foam import algorithm, landmarks, networks, presets

    registry.register("layer", "sketch", landmarks.LandmarkSketch, config=landmarks.SketchConfig,
                      help="68 landmarks -> 1-channel face sketch (polylines per facial part)",
                      example=landmarks.landmarks_example)
    registry.register("layer", "dots", landmarks.LandmarkDots, config=landmarks.DotsConfig,
                      help="68 landmarks -> 1-channel Gaussian dots", example=landmarks.landmarks_example)
    tiny = {"image_size": 16, "base_channels": 4, "max_channels": 8, "num_attributes": 2}
    registry.register("generator", "generator", networks.FOAMGenerator, config=networks.GeneratorConfig,
                      help="progressive U-shaped completion G with ToRGB / ToFilter heads and FOAM read/write",
                      example=networks.generator_example, tiny={**tiny, "latent_channels": 8, "skip": "residual"})
    registry.register("discriminator", "discriminator", networks.FOAMDiscriminator,
                      config=networks.DiscriminatorConfig,
                      help="growable D on (image, landmarks) with D_cls and D_attr heads on 4x4 features",
                      example=networks.discriminator_example, tiny=tiny)
    registry.register("algorithm", "algorithm", algorithm.FOAMAlgorithm, config=algorithm.FOAMConfig,
                      help="FOAM face completion: progressive growing with learned read/write filters, "
                           "landmark + attribute conditioning, history pool",
                      tiny={"generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8,
                                          "latent_channels": 8},
                            "discriminator": {"type": "foam.discriminator", "base_channels": 4, "max_channels": 8},
                            "use_feature_loss": False, "first_images": 8, "grow_images": [8],
                            "stabilise_images": 8})
    for name, (value, text) in presets.PRESETS.items():
        registry.preset(name, value, help=text)
