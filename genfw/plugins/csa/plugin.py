"""Hooks of the `csa` plugin: CSA layer, rough / refinement generators, discriminators, algorithm, presets."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    from genfw.plugins.csa import algorithm, bench, discriminators, layer, networks, presets

    registry.register("layer", "layer", layer.CSALayer, config=layer.CSAConfig,
                      help="coherent semantic attention: search + sequential generate over hole features",
                      example=layer.layer_example)
    tiny_rough = {"image_size": 16, "base_channels": 4, "max_channels": 8}
    tiny_refine = {"image_size": 32, "base_channels": 4, "max_channels": 8, "csa_level": 2, "consistency_channels": 0}
    registry.register("generator", "rough", networks.RoughNet, config=networks.RoughConfig,
                      help="rough network: pix2pix U-Net, 4x4 convs, skip concat, InstanceNorm, Tanh",
                      example=networks.rough_example, tiny=tiny_rough)
    registry.register("generator", "refine", networks.RefineNet, config=networks.RefineConfig,
                      help="refinement network: dilated-conv encoder with the CSA layer, mirrored decoder",
                      example=networks.refine_example, tiny=tiny_refine)
    registry.register("discriminator", "patch-discriminator", discriminators.PatchDiscriminator,
                      config=discriminators.PatchConfig, help="70x70 PatchGAN (InstanceNorm, LeakyReLU 0.2)",
                      example=discriminators.patch_example, tiny={"base_channels": 4})
    registry.register("discriminator", "feature-discriminator", discriminators.FeatureDiscriminator,
                      config=discriminators.FeatureConfig,
                      help="frozen VGG-16 pool3 then 4x4/2 convs 256->512->512->512 (needs VGG-16 weights)",
                      example=discriminators.feature_example,
                      tiny={"widths": [8, 8, 8], "allow_random_weights": True})
    registry.register("algorithm", "algorithm", algorithm.CSAAlgorithm, config=algorithm.CSAAlgorithmConfig,
                      help="CSA inpainting: rough + refine (CSA) nets vs patch and feature discriminators, RaLSGAN",
                      tiny={"rough": {"type": "csa.rough", "base_channels": 4, "max_channels": 8},
                            "refine": {"type": "csa.refine", "base_channels": 4, "max_channels": 8, "csa_level": 1,
                                       "consistency_channels": 0},
                            "patch_discriminator": {"type": "csa.patch-discriminator", "base_channels": 4},
                            "use_feature_discriminator": False, "lambda_consistency": 0.0},
                      tiny_data={"image_size": 32})  # the tiny nets' bottleneck needs 32 px
    for name, (value, text) in presets.presets().items():
        registry.preset(name, value, help=text)
    registry.benchmark("layer", bench.csa_layer_benchmark,
                       help="CSA layer fwd+bwd, 512 ch 32x32, 25 % holes, batch 1 and 8, vs the per-position loop")
