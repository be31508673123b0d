"""CSA inpainting (Liu et al., ICCV 2019): coherent semantic attention, two-stage network."""
