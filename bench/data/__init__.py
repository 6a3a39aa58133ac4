"""Data: the embedded synthetic face set, the occlusion generator, CelebA and image folders."""
