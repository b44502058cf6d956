#ACPI power - management and GED device tests(owned by the ACPI area), included from
#tests / unit / devices / CMakeLists.txt.
kite_test(
    acpi_devices_unit_tests LABEL unit SOURCES acpi_pm_test.cc acpi_ged_test.cc LIBS kite_devices)
