"""Face identification under occlusion (the paper's Fig. 12): recognizers, the protocol, the run step.

``recognizer`` the plugin interface (the models live with the others: LightCNN-9 in ``baselines.lightcnn``),
``protocol`` gallery, probes and CMC with intervals, ``split`` the identity-disjoint re-split for small test
partitions, ``run`` the step of ``bench run --identification``.
"""
