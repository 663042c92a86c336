UNIT_TESTS += $(patsubst tests/unit/%.c,%,$(sort $(wildcard tests/unit/test-*.c)))
