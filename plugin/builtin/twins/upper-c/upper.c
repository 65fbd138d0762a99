// upper-wasm in C: the WebAssembly twin of the native upper plugin. Each
// record's value becomes its ASCII upper-case (status 0), every other byte
// unchanged; keys and headers are skipped. Written from docs/abi.md alone:
// no libc, no imports, no _initialize. Build with build.sh.
//
// Memory, from __heap_base (16-byte aligned) on:
//
//	[in, in+in_cap)              the host's input region (df_alloc)
//	[in+in_cap, in+2*in_cap+16)  the output region
//
// The output is never longer than the input: a record costs at least 20
// bytes of framing in the batch and 8 bytes of entry in the result, and
// its value the same number of bytes in both. The 16 bytes past the
// output are slack for the last 16-byte store of a value (below).
//
// Speed. The runtime stops runaway guests by checking, at every loop
// header, whether the batch's deadline has passed, and that check leaves
// compiled code: it costs tens of nanoseconds, more than the work on a
// 100-byte value. So the code loops as little as it can: values are
// upper-cased 16 bytes at a time (SIMD) by straight-line code up to 256
// bytes, the loop over records is unrolled 8 times, and the loop over a
// record's headers is entered only when it has some.

#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(name)))
#define INLINE static inline __attribute__((always_inline))

// info is what df_info returns: plugin.Info as JSON.
static const char info[] =
    "{\"name\":\"upper-wasm\",\"version\":\"1.0.0\",\"type\":\"transformer\","
    "\"description\":\"ASCII upper-case of each value (the WebAssembly twin of upper, in C)\","
    "\"author\":\"DataFlare\",\"api_version\":\"1.0\"}";

// bad is the batch-level error df_process returns for a message it cannot
// walk: one result entry, status 2 (error), code 1 (invalid input).
static const char bad[] = "\x02\x01\x00\x00" "\x23\x00\x00\x00" // status, code, reserved, len
			 "upper-wasm: malformed batch message";
_Static_assert(sizeof bad - 1 == 8 + 0x23, "the message's length");

// __heap_base is where the linker's data and stack end.
extern uint8_t __heap_base;

// in_cap is the size of the input region the host holds (0: none yet).
static uint32_t in_cap;

INLINE uint8_t *input(void) {
	return (uint8_t *)(((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15);
}

// packed is the ABI's packed pointer/length.
INLINE uint64_t packed(const void *p, uint32_t n) {
	return (uint64_t)(uintptr_t)p << 32 | n;
}

INLINE uint32_t ld32(const uint8_t *p) {
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

INLINE void st64(uint8_t *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }

// upper16 upper-cases the ASCII letters among 16 bytes: b+0x1f is, as a
// signed byte, in [-128, -103] exactly when b is in ['a', 'z'].
INLINE v128_t upper16(v128_t v) {
	v128_t lower = wasm_i8x16_lt(wasm_i8x16_add(v, wasm_i8x16_splat(0x1f)), wasm_i8x16_splat(-102));
	return wasm_v128_xor(v, wasm_v128_and(lower, wasm_i8x16_splat(0x20)));
}

// UP(k) upper-cases bytes [16k, 16k+16) of s into d.
#define UP(k) wasm_v128_store(d + 16 * (k), upper16(wasm_v128_load(s + 16 * (k))))
#define UP2(k) UP(k); UP((k) + 1)
#define UP4(k) UP2(k); UP2((k) + 2)
#define UP8(k) UP4(k); UP4((k) + 4)
#define UP16(k) UP8(k); UP8((k) + 8)
#define UP32(k) UP16(k); UP16((k) + 16)
#define UP64(k) UP32(k); UP32((k) + 32)

// STEP(n, UPn) upper-cases the next n bytes when more than n are left.
#define STEP(bytes, up)             \
	if (n > (bytes)) {          \
		up(0);              \
		d += (bytes);       \
		s += (bytes);       \
		n -= (bytes);       \
	}

// TAIL upper-cases the last n ≤ 256 bytes, with no loop: it may read up
// to 15 bytes past s+n and write up to 15 past d+n (upper-cased garbage
// that the next entry overwrites, or past the output's end).
#define TAIL              \
	STEP(128, UP8)    \
	STEP(64, UP4)     \
	STEP(32, UP2)     \
	STEP(16, UP)      \
	if (n > 0) {      \
		UP(0);    \
	}

// upper_long upper-cases a value longer than 256 bytes, 1 KiB per loop
// iteration.
__attribute__((noinline)) static void upper_long(uint8_t *d, const uint8_t *s, uint32_t n) {
	while (n > 1024) {
		UP64(0);
		d += 1024;
		s += 1024;
		n -= 1024;
	}
	STEP(512, UP32)
	STEP(256, UP16)
	TAIL
}

// upper writes the ASCII upper-case of s[0:n] to d.
INLINE void upper(uint8_t *d, const uint8_t *s, uint32_t n) {
	if (n > 256) {
		upper_long(d, s, n);
		return;
	}
	TAIL
}

// record turns the record at p (the message ends at end) into its result
// entry at *o, advances *o past it and returns the next record, or 0 when
// the record runs past end.
INLINE const uint8_t *record(const uint8_t *p, const uint8_t *end, uint8_t **o) {
	if ((uint32_t)(end - p) < 20)
		return 0;
	uint32_t klen = ld32(p), vlen = ld32(p + 4), hcount = ld32(p + 8);
	p += 20;
	if (klen > (uint32_t)(end - p))
		return 0;
	p += klen;
	if (vlen > (uint32_t)(end - p))
		return 0;
	st64(*o, (uint64_t)vlen << 32); // status 0, code 0, reserved 0, len
	upper(*o + 8, p, vlen);
	*o += 8 + vlen;
	p += vlen;
	if (hcount) {
		do {
			for (int i = 0; i < 2; i++) { // the header's key, then its value
				if ((uint32_t)(end - p) < 4)
					return 0;
				uint32_t n = ld32(p);
				p += 4;
				if (n > (uint32_t)(end - p))
					return 0;
				p += n;
			}
		} while (--hcount);
	}
	return p;
}

EXPORT("df_abi_version") uint32_t df_abi_version(void) { return 1; }

EXPORT("df_info") uint64_t df_info(void) { return packed(info, sizeof info - 1); }

// df_alloc reserves an input region of size bytes (and the output region
// after it), growing memory as needed; 0 when memory cannot grow.
EXPORT("df_alloc") uint8_t *df_alloc(uint32_t size) {
	if (size > 0x3ff00000) // twice that would not fit 2 GiB
		return 0;
	uint32_t cap = (size + 15) & ~15u;
	uintptr_t need = (uintptr_t)input() + 2 * (uintptr_t)cap + 16;
	uintptr_t have = __builtin_wasm_memory_size(0) << 16;
	if (need > have && __builtin_wasm_memory_grow(0, (need - have + 0xffff) >> 16) == (uintptr_t)-1)
		return 0;
	in_cap = cap;
	return input();
}

// df_process writes one result entry per record of the batch message at
// ptr to the output region and returns it.
EXPORT("df_process") uint64_t df_process(const uint8_t *ptr, uint32_t len) {
	if (ptr != input() || len > in_cap || len < 32)
		return 1ull << 63 | packed(bad, sizeof bad - 1);
	uint32_t header = ld32(ptr + 4), count = ld32(ptr + 8);
	if (header < 32 || header > len)
		return 1ull << 63 | packed(bad, sizeof bad - 1);
	const uint8_t *p = ptr + header, *end = ptr + len;
	uint8_t *out = input() + in_cap, *o = out;
	for (; count >= 8; count -= 8) {
		p = record(p, end, &o);
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		p = p ? record(p, end, &o) : 0;
		if (!p)
			return 1ull << 63 | packed(bad, sizeof bad - 1);
	}
	for (; count > 0; count--) {
		p = record(p, end, &o);
		if (!p)
			return 1ull << 63 | packed(bad, sizeof bad - 1);
	}
	if (p != end)
		return 1ull << 63 | packed(bad, sizeof bad - 1);
	return packed(out, (uint32_t)(o - out));
}
