"""The model zoo: built-in small-image models, torchvision models, user files, and safe checkpoints.

``build_model("resnet20", num_classes=10, in_channels=1)`` builds a model by name;
``build_model("torchvision:resnet18")`` an untrained torchvision model; ``build_model("net.py:make")``
a model from the user's own file (running its code, by design). Weights are saved with
:func:`save_checkpoint` and loaded with :func:`load_checkpoint_into` / :func:`load_weights_file`, which
never unpickle code.
"""

from autoprune.models._factory import ModelSourceError
from autoprune.models.checkpoint import load_checkpoint_into, load_weights_file, save_checkpoint
from autoprune.models.mobilenetv2 import MobileNetV2
from autoprune.models.registry import MODELS
from autoprune.models.resnet import CifarResNet
from autoprune.models.vgg import VGG
from autoprune.models.zoo import build_model, model_names

__all__ = [
    "MODELS",
    "VGG",
    "CifarResNet",
    "MobileNetV2",
    "ModelSourceError",
    "build_model",
    "load_checkpoint_into",
    "load_weights_file",
    "model_names",
    "save_checkpoint",
]
