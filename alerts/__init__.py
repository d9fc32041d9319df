"""Alerting room: rules -> incidents -> notifiers (see the alerting issue; nothing here yet)."""
