#!/usr/bin/env bash
# Build (once) a Debian 12 box for the vagrant-libvirt provider from Debian packages only, and add it
# to Vagrant as $SUMFLOW_BOX_NAME (default sumflow/debian12). No box is downloaded.
#
#   scripts/vagrant/build-box.sh        (make vagrant-box)
#
# The root file system comes from debootstrap (with the kernel, sshd and the packages the roles
# install anyway, so their apt tasks are quick under emulation); it becomes an ext4 image written
# without loop devices (mke2fs -d), converted to qcow2. The box boots its kernel directly
# (libvirt.kernel/initrd/cmd_line in the box's own Vagrantfile), so it needs no boot loader.
# Cache: $SUMFLOW_CACHE/vagrant-box/<key>/ (key = package list + this recipe's version); a box that
# Vagrant already lists with the same key is left alone, so a second run does nothing.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

BOX_PACKAGES="${BOX_PACKAGES:-systemd,systemd-sysv,systemd-resolved,dbus,linux-image-amd64,openssh-server,sudo,python3,python3-apt,python3-venv,iproute2,ca-certificates,procps,acl,tar,gzip,systemd-timesyncd,openjdk-17-jre-headless,curl,rsync}"
BOX_DISK_GB="${BOX_DISK_GB:-12}"
BOX_RECIPE=v3
key="$(printf '%s|%s|%s|%s' "$BOX_SUITE" "$BOX_PACKAGES" "$BOX_DISK_GB" "$BOX_RECIPE" | sha256sum | cut -c1-12)"
work="$VAGRANT_CACHE/vagrant-box/$key"
box_file="$work/sumflow-debian12.box"

box_added_key() {
  local dir
  dir="$(vagrant_home)/boxes/${SUMFLOW_BOX_NAME//\//-VAGRANTSLASH-}/0/libvirt"
  [[ -f "$dir/sumflow-box-key" ]] && cat "$dir/sumflow-box-key"
}

if [[ "$(box_added_key 2>/dev/null)" == "$key" ]] && [[ -f "$(kernel_dir "$key")/vmlinuz" ]]; then
  log "box $SUMFLOW_BOX_NAME ($key) is already added"
  exit 0
fi

mkdir -p "$work"
exec 9>"$work/.lock"
flock 9

if [[ ! -f "$box_file" ]]; then
  rootfs="$work/rootfs"
  cleanup() {
    for m in proc sys dev/pts dev; do mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m"; done
    rm -rf "$rootfs" "$work/box.raw" "$work/box.img" "$box_file.tmp"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  rm -rf "$rootfs"
  started=$SECONDS
  log "debootstrap $BOX_SUITE (minbase + kernel, sshd, Java) from $BOX_MIRROR"
  debootstrap --variant=minbase --include="$BOX_PACKAGES" "$BOX_SUITE" "$rootfs" "$BOX_MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

  log "configuring the guest (vagrant user, sshd, networkd, machine id)"
  chroot "$rootfs" /bin/sh -eu <<'GUEST' >>"$work/debootstrap.log" 2>&1
useradd --create-home --shell /bin/bash --user-group vagrant
echo 'vagrant:vagrant' | chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >/etc/fstab
printf 'UseDNS no\n' >/etc/ssh/sshd_config.d/vagrant.conf
# The management interface (eth0: net.ifnames=0 on the kernel command line) takes DHCP; Vagrant
# writes its own networkd files for the private network.
printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n' >/etc/systemd/network/10-eth0.network
systemctl enable systemd-networkd.service systemd-resolved.service ssh.service
# Host keys and the machine id are made at first boot, so every clone gets its own (and its own
# DHCP lease: dbus's machine id must be the same file).
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
# Keys first, then Debian's own config test (a drop-in's ExecStartPre would run after that test).
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  >/etc/systemd/system/ssh.service.d/host-keys.conf
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
printf 'localhost\n' >/etc/hostname
# debootstrap writes no /etc/hosts; Vagrant only adds the VM's own name to it.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
apt-get clean
GUEST
  install -m 0600 -o 1000 -g 1000 "$(vagrant_insecure_key)" "$rootfs/home/vagrant/.ssh/authorized_keys"
  ln -sf /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages

  kdir="$work/kernel"
  mkdir -p "$kdir"
  cp "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)" "$kdir/vmlinuz"
  cp "$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -n 1)" "$kdir/initrd.img"

  log "writing the ext4 image (${BOX_DISK_GB} GiB, sparse) and converting it to qcow2"
  mke2fs -q -t ext4 -L root -d "$rootfs" "$work/box.raw" "${BOX_DISK_GB}G"
  qemu-img convert -O qcow2 "$work/box.raw" "$work/box.img"
  rm -f "$work/box.raw"

  cat >"$work/metadata.json" <<JSON
{"provider": "libvirt", "format": "qcow2", "virtual_size": $BOX_DISK_GB}
JSON
  # The box's own Vagrantfile: direct kernel boot from files libvirt's QEMU user can read.
  cat >"$work/Vagrantfile" <<RUBY
# Built by scripts/vagrant/build-box.sh ($key): Debian $BOX_SUITE, direct kernel boot.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = "$(kernel_dir "$key")/vmlinuz"
    libvirt.initrd = "$(kernel_dir "$key")/initrd.img"
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0"
    libvirt.disk_bus = "virtio"
  end
end
RUBY
  printf '%s\n' "$key" >"$work/sumflow-box-key"
  tar -C "$work" -cf "$box_file.tmp" metadata.json Vagrantfile box.img sumflow-box-key
  mv "$box_file.tmp" "$box_file"
  rm -f "$work/box.img"
  rm -rf "$rootfs"
  trap - EXIT
  log "box built in $((SECONDS - started)) s: $box_file ($(du -h "$box_file" | cut -f1))"
fi

# Kernel and initrd where libvirt's QEMU user can read them (the Vagrant home is under /root).
install -d -m 0755 "$(kernel_dir "$key")"
install -m 0644 "$work/kernel/vmlinuz" "$work/kernel/initrd.img" "$(kernel_dir "$key")/"

log "adding the box as $SUMFLOW_BOX_NAME"
vagrant box add --force --name "$SUMFLOW_BOX_NAME" --provider libvirt "$box_file" >&2
# A re-added box must not be served from an old base volume in the storage pool.
libvirt_up
for vol in $(virsh -q vol-list "$LIBVIRT_POOL" 2>/dev/null | awk '{print $1}' | grep -F "${SUMFLOW_BOX_NAME//\//-VAGRANTSLASH-}_vagrant_box_image" || true); do
  virsh -q vol-delete --pool "$LIBVIRT_POOL" "$vol" >/dev/null 2>&1 || true
done
# Boxes of older recipes are not used again.
for old in "$VAGRANT_CACHE"/vagrant-box/* "$BOX_KERNEL_ROOT"/*; do
  [[ -d "$old" && "$(basename "$old")" != "$key" ]] && rm -rf "$old"
done
log "box $SUMFLOW_BOX_NAME ($key) ready"
