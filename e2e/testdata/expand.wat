;; expand: a plugin whose output is large, for the memory-budget test
;; (e2e/budget_test.go). Each record's value becomes the value repeated 32
;; times (status 0); keys and headers are skipped. Written from docs/abi.md,
;; as wasm/testdata/abi_upper.wat; build: wat2wasm --enable-all expand.wat.
;;
;; Memory: page 0 holds the info JSON; the host's input region starts at
;; 65536 (page 1) and has in_cap bytes; the output is written right after it.
;; An output is at most record_count*8 + 32 * the sum of the values
;; < 33*len, so df_alloc reserves 34*in_cap bytes from page 1 on.
(module
  (memory (export "memory") 1)
  (global $in_cap (mut i32) (i32.const 0))
  (data (i32.const 16) "{\"name\":\"expand\",\"version\":\"1.0.0\",\"type\":\"transformer\",\"description\":\"each value 32 times over\",\"api_version\":\"1.0\"}")

  (func (export "df_abi_version") (result i32) (i32.const 1))

  ;; (16 << 32) | length of the JSON above (117 bytes).
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 117)))

  (func (export "df_alloc") (param $size i32) (result i32)
    (local $pages i32) (local $need i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $size) (i32.const 65535)) (i32.const 16)))
    (local.set $need (i32.add (i32.const 1) (i32.mul (local.get $pages) (i32.const 34))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $in_cap (i32.shl (local.get $pages) (i32.const 16)))
    (i32.const 65536))

  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (local $count i32) (local $off i32) (local $out i32) (local $o i32)
    (local $klen i32) (local $vlen i32) (local $hcount i32) (local $v i32)
    (local $j i32)
    (local.set $count (i32.load offset=8 (local.get $ptr)))
    (local.set $off (i32.add (local.get $ptr) (i32.load offset=4 (local.get $ptr))))
    (local.set $out (i32.add (local.get $ptr) (global.get $in_cap)))
    (local.set $o (local.get $out))
    (block $done
      (loop $records
        (br_if $done (i32.eqz (local.get $count)))
        (local.set $klen (i32.load (local.get $off)))
        (local.set $vlen (i32.load offset=4 (local.get $off)))
        (local.set $hcount (i32.load offset=8 (local.get $off)))
        (local.set $v (i32.add (i32.add (local.get $off) (i32.const 20)) (local.get $klen)))
        ;; entry framing: status 0, code 0, reserved 0, len = 32*vlen
        (i32.store (local.get $o) (i32.const 0))
        (i32.store offset=4 (local.get $o) (i32.mul (local.get $vlen) (i32.const 32)))
        (local.set $o (i32.add (local.get $o) (i32.const 8)))
        ;; the value, 32 times
        (local.set $j (i32.const 0))
        (block $vdone
          (loop $copies
            (br_if $vdone (i32.ge_u (local.get $j) (i32.const 32)))
            (memory.copy (local.get $o) (local.get $v) (local.get $vlen))
            (local.set $o (i32.add (local.get $o) (local.get $vlen)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $copies)))
        ;; skip the value and the headers
        (local.set $off (i32.add (local.get $v) (local.get $vlen)))
        (block $hdone
          (loop $headers
            (br_if $hdone (i32.eqz (local.get $hcount)))
            ;; a header is two strs: u32 length and bytes of the key, then of the value
            (local.set $off (i32.add (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))
            (local.set $off (i32.add (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))
            (local.set $hcount (i32.sub (local.get $hcount) (i32.const 1)))
            (br $headers)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $records)))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $o) (local.get $out)))))
)
