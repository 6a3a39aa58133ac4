"""Building blocks shared by several methods: VGG-16 features and the standard GAN/inpainting losses."""
