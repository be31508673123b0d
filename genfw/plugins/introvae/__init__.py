"""IntroVAE (Huang et al., NeurIPS 2018): an introspective VAE whose encoder is also the adversary."""
