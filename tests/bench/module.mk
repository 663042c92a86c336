BENCHES += $(patsubst tests/bench/%.c,%,$(sort $(wildcard tests/bench/bench-*.c)))
