"""Using a trained generator: load it from any file it may come in, translate images, export it.

**Loading** (:func:`load_generator`). The file's kind is read from its first bytes, not its name:

- a ganforge checkpoint (or a run directory: its newest checkpoint). The model is rebuilt from the
  checkpoint's recipe through the registries, like in training, and its weights loaded; the generator
  is the net of the direction the model declares (``TrainingModel.directions()``, the first by
  default) or the exported net named by ``net``.
- a safetensors export (:func:`save_safetensors`): the spec travels in the file's metadata, so it is
  rebuilt without the recipe.
- a hub folder (:func:`save_hub_folder`), or its ``model.safetensors`` alone: every exported net's
  spec travels in its config, and the direction (or net) picks one, as for a checkpoint.
- TorchScript and ONNX exports: run as they are (ONNX through onnxruntime).
- anything else holding tensors (a ``.pth`` state dict, a safetensors file without ganforge metadata)
  goes to the plugins' ``load_generator_weights`` hook, which recognises its own formats (a model
  plugin reads the files of the project its model comes from).

Loading never executes code from a file: pickles are read with ``torch.load(weights_only=True)``,
which refuses one that would call a function, and safetensors holds tensors only. TorchScript and
ONNX files are programs by nature: they run their own graph of tensor operations (never Python).

**Channels**. A generator's input channels are read from its first convolution's weight
(:func:`input_channels`; an ONNX model's from its input's shape): images are converted to greyscale
for a 1-channel generator and to RGB otherwise, and a 1-channel output is written as a greyscale file.

**Translating**. :func:`translate_batch` pads a batch by reflection to a multiple of 4, and of the
generator's ``size_multiple`` when it declares one (a U-Net needs ``2**levels``), and crops the
result back, so images keep their own size. :func:`translate_tiled` does large images in overlapping
tiles with bounded memory: each tile's result is weighted by a raised-cosine window that falls to
almost zero at the tile's inner edges (where the network saw padding, not the picture), the weights
are normalised where tiles overlap, and rows are finished band by band. Instance norm, which would
otherwise normalise each tile by its own statistics (and give each tile its own tone), can use
statistics taken once from a downscaled view of the whole image.

**Exporting**: :func:`save_safetensors`, :func:`save_onnx`, :func:`save_torchscript`, and
:func:`save_hub_folder` (every generator of a model, as a folder to publish on the Hugging Face Hub;
:mod:`ganforge.inference.hubfolder`). ``hf://owner/repo[@revision][/path]`` sources are read through
huggingface_hub's cache (:mod:`ganforge.inference.hub`).
"""

from ganforge.inference.exporting import (
    max_abs_diff,
    save_hub_folder,
    save_onnx,
    save_safetensors,
    save_torchscript,
)
from ganforge.inference.files import (
    CHECKPOINT_FORMAT,
    CORE_FORMATS,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    read_pickle,
    read_safetensors,
    sniff,
)
from ganforge.inference.folders import (
    IMAGE_SUFFIXES,
    Job,
    TranslateReport,
    find_images,
    image_size,
    output_size,
    output_suffix,
    parse_size,
    read_image,
    translate_files,
    translate_image,
    write_image,
)
from ganforge.inference.hub import HfSource, is_hf_source, parse_hf
from ganforge.inference.hubfolder import is_hub_folder
from ganforge.inference.loading import (
    Generator,
    LoadedRun,
    NetBundle,
    build_generator,
    choose_net,
    describe_spec,
    input_channels,
    load_generator,
    load_nets,
    load_run,
    plugin_weights,
)
from ganforge.inference.tensors import (
    PAD_MULTIPLE,
    Tiling,
    downscaled_view,
    global_instance_norm,
    image_to_tensor,
    input_multiple,
    pad_to_multiple,
    tile_starts,
    tile_window,
    to_uint8,
    to_unit,
    translate_batch,
    translate_tiled,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CORE_FORMATS",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "PAD_MULTIPLE",
    "Generator",
    "HfSource",
    "Job",
    "LoadedRun",
    "NetBundle",
    "Tiling",
    "TranslateReport",
    "build_generator",
    "choose_net",
    "describe_spec",
    "downscaled_view",
    "find_images",
    "global_instance_norm",
    "image_size",
    "image_to_tensor",
    "input_channels",
    "input_multiple",
    "is_hf_source",
    "is_hub_folder",
    "load_generator",
    "load_nets",
    "load_run",
    "max_abs_diff",
    "output_size",
    "output_suffix",
    "pad_to_multiple",
    "parse_hf",
    "parse_size",
    "plugin_weights",
    "read_image",
    "read_pickle",
    "read_safetensors",
    "save_hub_folder",
    "save_onnx",
    "save_safetensors",
    "save_torchscript",
    "sniff",
    "tile_starts",
    "tile_window",
    "to_uint8",
    "to_unit",
    "translate_batch",
    "translate_files",
    "translate_image",
    "translate_tiled",
    "write_image",
]
