"""inspect_app: visual quality inspection for factories.

Layers import one way: ``config``/``records`` → ``data`` → ``models`` → ``engine`` → ``lifecycle`` → ``ui``/``cli``.
``storage`` depends only on ``config`` and ``records`` so that the dashboard never loads torch.
"""

__version__ = "0.1.0"
