"""Building blocks shared by several methods: VGG-16 features, the standard GAN/inpainting losses, the GAN parts
and critics, the two-path generator, weight init and learning-rate schedules."""
