# Sourced first by every scenario inside the simulated host (bash, as root).
# Sets up what a real-time KVM host would have and virtme-ng leaves out:
# fast reads of the host's files, cgroup v2 with cpuset, libvirtd.
# Environment from tests/simhost.py: SIMHOST_REPO (the checkout), SIMHOST_BIN
# (its virtualenv's bin), SIMHOST_OUT (a directory shared read-write with the host).

# The guest root is the host's / over 9p without caching: every stat and
# page-in is a round trip through emulated virtio. A second export of / with
# cache=loose, bound over the trees that programs load from, makes Python,
# libvirtd and QEMU start several times faster. The host does not change
# them during a boot.
simhost_fast_reads() {
    mkdir -p /run/simhost/root
    mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro,msize=512000,access=any \
        simhost.root /run/simhost/root || return 0
    local d
    for d in /usr/bin /usr/sbin /usr/lib/x86_64-linux-gnu /usr/lib/python3 \
             /usr/lib/python3.11 /usr/share/qemu /usr/share/seabios /usr/lib/ipxe \
             "$SIMHOST_REPO"; do
        [ -d "/run/simhost/root$d" ] && mount --bind "/run/simhost/root$d" "$d"
    done
}

# libvirtd without systemd: cgroup v2 controllers for machine cgroups,
# QEMU as root without a security driver, log directories on the tmpfs
# that virtme-ng puts on /var/log.
simhost_start_libvirtd() {
    echo "+cpuset +cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu
    # This machine's own domains, networks and pools are not the simulated
    # host's (an autostart domain would boot in there): hide them.
    local d
    for d in /etc/libvirt/qemu /etc/libvirt/storage; do
        [ -d "$d" ] && mount -t tmpfs -o mode=0755 simhost "$d"
    done
    printf 'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n' >> /etc/libvirt/qemu.conf
    "$SIMHOST_REPO/scripts/start-libvirtd" >/dev/null
}

export PATH="${SIMHOST_BIN:-$SIMHOST_REPO/.venv/bin}:$PATH"
export LIBVIRT_DEFAULT_URI=qemu:///system
