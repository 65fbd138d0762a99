;; abi_mixed: every kind of result entry, and a batch-level error, written
;; from docs/abi.md. Record i gets, by i mod 4:
;;   0: status 0, its key as the new value
;;   1: status 1, dropped
;;   2: status 2, code 2, message "odd record"
;;   3: status 3, unchanged
;; A batch with any configuration pair fails as a whole (bit 63 set) with
;; code 1 and the message "abi-mixed takes no configuration".
(module
  (memory (export "memory") 1)
  (global $in_cap (mut i32) (i32.const 0))
  (data (i32.const 16) "{\"name\":\"abi-mixed\",\"version\":\"1.0.0\",\"type\":\"filter\",\"api_version\":\"1.0\"}")
  ;; the batch error entry: status 2, code 1, len 32, message
  (data (i32.const 512) "\02\01\00\00\20\00\00\00abi-mixed takes no configuration")
  (data (i32.const 600) "odd record")

  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 74)))

  (func (export "df_alloc") (param $size i32) (result i32)
    (local $pages i32) (local $need i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $size) (i32.const 65535)) (i32.const 16)))
    (local.set $need (i32.add (i32.const 1) (i32.mul (local.get $pages) (i32.const 3))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $in_cap (i32.shl (local.get $pages) (i32.const 16)))
    (i32.const 65536))

  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (local $p i32) (local $count i32) (local $off i32) (local $out i32) (local $o i32)
    (local $i i32) (local $klen i32) (local $vlen i32) (local $hcount i32) (local $k i32)
    ;; skip job, plugin and digest (each a u32 length and bytes) to config_count
    (local.set $p (i32.add (local.get $ptr) (i32.const 32)))
    (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
    (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
    (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
    (if (i32.ne (i32.load (local.get $p)) (i32.const 0))
      (then (return (i64.or (i64.const 0x8000000000000000)
        (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 40))))))
    (local.set $count (i32.load offset=8 (local.get $ptr)))
    (local.set $off (i32.add (local.get $ptr) (i32.load offset=4 (local.get $ptr))))
    (local.set $out (i32.add (local.get $ptr) (global.get $in_cap)))
    (local.set $o (local.get $out))
    (block $done
      (loop $records
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $klen (i32.load (local.get $off)))
        (local.set $vlen (i32.load offset=4 (local.get $off)))
        (local.set $hcount (i32.load offset=8 (local.get $off)))
        (local.set $k (i32.add (local.get $off) (i32.const 20)))
        (block $entry
          (block $s3 (block $s2 (block $s1 (block $s0
            (br_table $s0 $s1 $s2 $s3 (i32.and (local.get $i) (i32.const 3))))
            ;; 0: the key as the value
            (i32.store (local.get $o) (i32.const 0))
            (i32.store offset=4 (local.get $o) (local.get $klen))
            (memory.copy (i32.add (local.get $o) (i32.const 8)) (local.get $k) (local.get $klen))
            (local.set $o (i32.add (local.get $o) (i32.add (i32.const 8) (local.get $klen))))
            (br $entry))
            ;; 1: dropped
            (i64.store (local.get $o) (i64.const 1))
            (local.set $o (i32.add (local.get $o) (i32.const 8)))
            (br $entry))
            ;; 2: error, code 2
            (i32.store (local.get $o) (i32.const 0x0202))
            (i32.store offset=4 (local.get $o) (i32.const 10))
            (memory.copy (i32.add (local.get $o) (i32.const 8)) (i32.const 600) (i32.const 10))
            (local.set $o (i32.add (local.get $o) (i32.const 18)))
            (br $entry))
          ;; 3: unchanged
          (i64.store (local.get $o) (i64.const 3))
          (local.set $o (i32.add (local.get $o) (i32.const 8))))
        ;; next record: framing, key, value, headers
        (local.set $off (i32.add (i32.add (local.get $k) (local.get $klen)) (local.get $vlen)))
        (block $hdone
          (loop $headers
            (br_if $hdone (i32.eqz (local.get $hcount)))
            ;; a header is two strs: u32 length and bytes of the key, then of the value
            (local.set $off (i32.add (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))
            (local.set $off (i32.add (i32.add (local.get $off) (i32.const 4)) (i32.load (local.get $off))))
            (local.set $hcount (i32.sub (local.get $hcount) (i32.const 1)))
            (br $headers)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $records)))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $o) (local.get $out)))))
)
