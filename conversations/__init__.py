"""Conversations of your own: each module's `step(state, message)` runs with CONVERSATION=conversations.NAME:step.

The image ships this folder (its tests stay out); see docs/conversations.md.
"""
