"""Guest services: guest applications log and mark events in host time
over a virtio-serial channel (kvmrt-gs(1), kvmrt-gs(7))."""

SYSLOG_SOCKET = "/dev/log"   # where the host side sends log_msg records
