#!/bin/busybox sh
# /init of the test VM: mount the basics, load the modules, run the test, report, power off.
# Every line it prints goes to the serial console the harness reads.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /var/run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 0 > /proc/sys/kernel/printk
for m in $(cat /etc/ganglion-vm/modules); do
  insmod "$m" || echo "GANGLION-VM: insmod $m failed"
done
# IPVS answers EINVAL to every new real server until the local routing table exists.
ip link set lo up
echo "GANGLION-VM-READY"
rc=1
if [ -x /etc/ganglion-vm/run.sh ]; then
  /etc/ganglion-vm/run.sh
  rc=$?
else
  echo "GANGLION-VM: no run.sh in the image"
fi
echo "GANGLION-VM-RESULT rc=$rc"
sync
reboot -f
