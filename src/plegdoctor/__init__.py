"""pleg-doctor: why did the kubelet stop relisting pods, and what to change."""

__version__ = "0.1.0"
