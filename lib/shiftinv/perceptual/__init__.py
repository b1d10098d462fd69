"""Perceptual metrics on the invariant backbones (notebooks 07-10).

- ``metrics``          LPIPS-style metrics on any VGG trunk (LPIPS, the paper's baseline, the GAP metric),
                       PSNR and SSIM
- ``zoo``              perceptual profiles and the metric zoo built from them; notebook 07's tables
- ``evaluate``         scoring image pairs and stimuli; SRCC under shifts (notebook 10)
- ``metric_training``  training the metrics' weights (the authors' recipes and LPIPS's)
- ``iqa``, ``images``, ``stimuli``  IQA datasets in their official layouts; reading images;
                       synthetic stimuli for the embedded demo
- ``iqa_evaluation``   notebook 08's pipeline (KADID-10k, TID)
- ``raid``             notebook 09's pipeline (RAID, both anchor protocols)
- ``stats``            correlations, bootstrap intervals, tests comparing metrics
"""
