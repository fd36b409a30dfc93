"""Model lifecycle: the fine-tuning run queue, the worker, schedules, champion/challenger promotion.

Sits between ``engine`` and ``ui``/``cli``: it imports ``storage`` and the engine's public functions only.
"""
