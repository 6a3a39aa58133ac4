"""Building blocks shared by several methods: VGG-16 features, the standard GAN/inpainting losses, weight init."""
