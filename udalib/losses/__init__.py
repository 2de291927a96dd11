"""Loss functions shared by the methods: each file holds one idea with its equation and citation.

- ``segmentation``: pixel cross-entropy on upsampled logits (every seed's source loss).
- ``adversarial``: BCE / least-squares GAN losses (AdaptSegNet, ADVENT, global-local).
- ``entropy``: weighted self-information, entropy map, MinEnt (ADVENT).
- ``lovasz``: Lovasz-softmax (SDCA's source IoU surrogate).
- ``contrastive``: SDCA's class statistics and closed-form contrastive bound.
- ``maxsquare``: MaxSquare and image-wise class-balanced (IW) MaxSquare.
- ``prototypes``: class means of pixel features (in the graph).
- ``clustering``, ``orthogonality``, ``sparsity``: the prototype losses of orthogonal and clustered embeddings.
- ``masked_pooling``, ``feature_banks``, ``instances``, ``isia``, ``aim``: BAFFT's category and instance level.
"""

from udalib.losses.adversarial import (
    GAN_KINDS,
    SOURCE_LABEL,
    TARGET_LABEL,
    discriminator_loss,
    gan_loss,
    generator_loss,
)
from udalib.losses.contrastive import ClassStatistics, contrastive_bound, downsample_labels, flatten_pixels
from udalib.losses.entropy import entropy_map, minent_loss, self_information
from udalib.losses.lovasz import lovasz_grad, lovasz_softmax, lovasz_softmax_logits
from udalib.losses.segmentation import multi_level_ce, seg_ce

__all__ = [
    "GAN_KINDS",
    "SOURCE_LABEL",
    "TARGET_LABEL",
    "ClassStatistics",
    "contrastive_bound",
    "discriminator_loss",
    "downsample_labels",
    "entropy_map",
    "flatten_pixels",
    "gan_loss",
    "generator_loss",
    "lovasz_grad",
    "lovasz_softmax",
    "lovasz_softmax_logits",
    "minent_loss",
    "multi_level_ce",
    "seg_ce",
    "self_information",
]
