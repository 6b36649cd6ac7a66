"""The podman lab: base images, apt cache, network and a topology of systemd containers."""
