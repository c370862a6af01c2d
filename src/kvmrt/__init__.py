"""kvmrt: real-time tuning for libvirt/KVM hosts."""

__version__ = "0.1.0"
