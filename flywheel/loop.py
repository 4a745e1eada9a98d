"""Orchestration of the data flywheel across apps: label → retrain → evaluate → gate → publish → rescore → queue.

Each step is added here as the room that owns it arrives; imports are queued by the labeling services.
"""
