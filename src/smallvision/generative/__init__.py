"""Generative models: autoencoders (plain, convolutional, variational, denoising) and GANs
(fully connected, DCGAN; BCE, least-squares, hinge, WGAN-GP losses), each with its own small loop
(pytorch/examples' dcgan shape) over the same run folder, data, checkpoints and reports as the
classifiers, and a quality number from a smallvision classifier (score.py)."""
