"""Hooks of the `foam` plugin: landmark encodings, progressive G / D, the FOAM filter layer, the FOAM
algorithm, presets, the completion benchmark and the `genfw foam` commands."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    from genfw.plugins.foam import algorithm, bench, filter_layer, landmarks, networks, presets

    registry.register("layer", "sketch", landmarks.LandmarkSketch, config=landmarks.SketchConfig,
                      help="68 landmarks -> 1-channel face sketch (polylines per facial part)",
                      example=landmarks.landmarks_example)
    registry.register("layer", "dots", landmarks.LandmarkDots, config=landmarks.DotsConfig,
                      help="68 landmarks -> 1-channel Gaussian dots", example=landmarks.landmarks_example)
    registry.register("layer", "filter", filter_layer.FOAMFilter, config=filter_layer.FilterConfig,
                      help="FOAM read/write filters as a feature attention layer: holes mix fine and "
                           "read-weighted coarse features by a learned write filter",
                      example=filter_layer.filter_example, tiny={"channels": 4})
    tiny = {"image_size": 16, "base_channels": 4, "max_channels": 8, "num_attributes": 2}
    registry.register("generator", "generator", networks.FOAMGenerator, config=networks.GeneratorConfig,
                      help="progressive U-shaped completion G (tables 3-5) with ToRGB / ToFilter heads and "
                           "FOAM read/write; attention slots at named levels",
                      example=networks.generator_example, tiny={**tiny, "latent_channels": 8, "skip": "residual"})
    registry.register("discriminator", "discriminator", networks.FOAMDiscriminator,
                      config=networks.DiscriminatorConfig,
                      help="growable D (table 6) on (image, landmarks) with D_cls and D_attr heads on 4x4 features",
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
    registry.benchmark("completion", bench.completion_benchmark,
                       help="single-pass completion of the paper-1024 network at 256/512/1024 px, fp32 and bf16, "
                            "vs the machine's conv throughput (paper: 0.54 s per 1024 px on a Titan Xp)")


@hookimpl
def register_commands(cli):
    from genfw.plugins.foam.commands import foam_group

    cli.add_command(foam_group)
