# Sourced by scripts/test.sh and scripts/boot.sh: what this host's /dev/kvm is.
#   kvm_host_kind → "hardware"  a usable /dev/kvm backed by vmx/svm: guests run natively
#                   "emulating" a usable /dev/kvm on a CPU without vmx/svm: the kernel's KVM
#                               emulates every guest instruction (about 1000x
#                               slower; Linux userspace cannot run)
#                   "none"      no usable /dev/kvm
# KITE_KVM_HOST=hardware|emulating|none overrides the answer.
kvm_host_kind() {
  if [[ -n ${KITE_KVM_HOST:-} ]]; then
    echo "$KITE_KVM_HOST"
  elif [[ ! (-c /dev/kvm && -r /dev/kvm && -w /dev/kvm) ]]; then
    echo none
  elif grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo hardware
  else
    echo emulating
  fi
}
