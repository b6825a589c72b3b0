"""lit-distill: student-centred reasoning distillation with PyTorch Lightning."""

__version__ = "0.1.0"
