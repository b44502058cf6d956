# Snapshot state and quiesce (src/virtio/*_snapshot.cc, block_quiesce.cc): queue save/restore
# and Unpop, the transport's restore validation (BAD_INPUTS F13), the shared device snapshot
# suite (blk, net, rng, vsock) and quiesce under load.
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/transport_core_snapshot.cc)
  kite_test(virtio_snapshot_tests LABEL unit threads
    SOURCES snapshot_harness.cc device_snapshot_test.cc queue_snapshot_test.cc
            transport_snapshot_test.cc quiesce_test.cc block_test_util.cc net_test_frames.cc
    LIBS kite_testing_virtio kite_virtio kite_storage kite_testing)
  target_include_directories(virtio_snapshot_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
endif()
