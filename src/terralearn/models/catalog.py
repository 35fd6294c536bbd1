"""The names of the pixel-classification networks, as plain dicts: read without importing torch.

``models.segmentation`` builds the networks; the command line, the configs and the ONNX runtime path only
need the names and the input-size multiple, so they live here.
"""

#: TerraLearn name -> segmentation-models-pytorch architecture name.
ARCHITECTURES = {
    "unet": "unet",
    "unetplusplus": "unetplusplus",
    "deeplabv3": "deeplabv3",
    "deeplabv3plus": "deeplabv3plus",
    "pspnet": "pspnet",
    "fpn": "fpn",
    "linknet": "linknet",
    "manet": "manet",
    "upernet": "upernet",
    "segformer": "segformer",
    "tiny": "tiny",
    "cnn_s": "cnn_s",
    "cnn_m": "cnn_m",
}

#: Small full-resolution CNNs built here (no encoder, no down-sampling): name -> (width, dilations).
#: Receptive fields: cnn_s 15 px, cnn_m 31 px. Chosen by ``--model auto`` when labels are few.
SMALL_CNNS = {"cnn_s": (32, (1, 2, 4)), "cnn_m": (32, (1, 2, 4, 8))}

#: Architectures that need no backbone and no input-size multiple.
NO_ENCODER = ("tiny", *SMALL_CNNS)

#: TerraLearn name -> smp encoder name. Any timm encoder: "timm:NAME" -> "tu-NAME".
BACKBONES = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "mobilenet_v2": "mobilenet_v2",
    "mobilenetv2": "mobilenet_v2",
    "mobilenet_v3": "tu-mobilenetv3_large_100",
    "mobilenetv3": "tu-mobilenetv3_large_100",
    "efficientnet-b0": "efficientnet-b0",
    "efficientnet-b1": "efficientnet-b1",
    "efficientnet-b2": "efficientnet-b2",
    "efficientnet-b3": "efficientnet-b3",
    "efficientnet-b4": "efficientnet-b4",
    "mit_b0": "mit_b0",
    "mit_b1": "mit_b1",
    "mit_b2": "mit_b2",
}

#: Input sides must be a multiple of this for the encoders' five down-samplings.
MULTIPLE = 32
