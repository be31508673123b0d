"""Hooks of the `introvae` plugin: networks, loss, algorithm, presets and the train-step benchmark."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    from genfw.plugins.introvae import algorithm, bench, losses, networks, presets

    tiny_net = {"image_size": 16, "channels": [4, 8], "in_channels": 3, "z_dim": 8}
    # the algorithm takes size and image channels from the data: its tiny nets need 16 px data
    tiny_algo_net = {"channels": [4, 8], "z_dim": 8}
    registry.register("encoder", "encoder", networks.Encoder, config=networks.NetConfig,
                      help="IntroVAE inference model: image -> (mu, logvar), residual blocks",
                      example=networks.encoder_example, tiny=tiny_net)
    registry.register("generator", "decoder", networks.Decoder, config=networks.NetConfig,
                      help="IntroVAE generator: z -> image, residual blocks, nearest upsampling",
                      example=networks.decoder_example, tiny=tiny_net)
    registry.register("loss", "loss", losses.IntroVAELoss, config=losses.IntroVAELossConfig,
                      help="Introspective loss: KL, L_AE, margin hinge (alpha_e / alpha_g / beta / m)",
                      example=losses.loss_example, cases=losses.loss_cases)
    registry.register("algorithm", "algorithm", algorithm.IntroVAE, config=algorithm.IntroVAEConfig,
                      help="IntroVAE Algorithm 1: encoder phase then decoder phase, optional VAE warm-up",
                      tiny={"encoder": {"type": "introvae.encoder", **tiny_algo_net},
                            "decoder": {"type": "introvae.decoder", **tiny_algo_net}})
    for name, (value, text) in presets.PRESETS.items():
        registry.preset(name, value, help=text)
    registry.benchmark("train-step", bench.train_step_benchmark)
    registry.benchmark("conv-layers", bench.conv_layers_benchmark)
