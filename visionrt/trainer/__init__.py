"""The trainer: fine-tune pretrained timm backbones (torch). Never imported by the runtime."""
