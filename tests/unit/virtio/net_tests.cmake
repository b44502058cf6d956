# virtio-net unit tests (src/virtio/net*.cc, tap_backend.cc, user_backend.cc,
# socket_backend.cc). The tap tests need root (CAP_NET_ADMIN) and /dev/net/tun and skip
# without; the others need nothing (the direct receive tests in net_rx_test.cc replace the tap
# with a socketpair).
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/net.cc)
  kite_test(virtio_net_tests LABEL unit threads
    SOURCES net_test.cc net_rx_test.cc net_parse_test.cc net_backend_test.cc net_test_frames.cc
      net_ctrl_test.cc
      socket_backend_test.cc
    LIBS kite_testing_virtio kite_virtio kite_testing)
endif()
