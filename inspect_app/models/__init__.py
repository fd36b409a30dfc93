"""Model code (``nn.Module`` and weights), kept apart from training loops.

``factory`` builds backbones and models by name, ``classifier`` holds the supervised model, ``checkpoint`` saves and
loads ``safetensors`` weights with a JSON model card.
"""
