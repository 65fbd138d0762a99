;; noop: every record unchanged (status 3); the cheapest possible plugin, for
;; measuring the ABI's own cost.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"name\":\"noop\",\"version\":\"1.0.0\",\"api_version\":\"1.0\"}")
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 53)))
  ;; the input region is page 1 (and more pages as needed)
  (func (export "df_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 2) (i32.shr_u (i32.mul (local.get $size) (i32.const 2)) (i32.const 16))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size))))))
    (i32.const 65536))
  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    ;; One status-3 entry, then doubled with memory.copy: about log2(count)
    ;; loop iterations instead of count, so that the benchmark measures the
    ;; ABI rather than the guest's loop.
    (local $count i32) (local $out i32) (local $size i32) (local $have i32)
    (local.set $count (i32.load offset=8 (local.get $ptr)))
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (local.set $size (i32.shl (local.get $count) (i32.const 3)))
    (if (i32.eqz (local.get $count))
      (then (return (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)))))
    (i64.store (local.get $out) (i64.const 3))
    (local.set $have (i32.const 8))
    (block $done (loop $double
      (br_if $done (i32.ge_u (local.get $have) (local.get $size)))
      (memory.copy
        (i32.add (local.get $out) (local.get $have))
        (local.get $out)
        (select (local.get $have) (i32.sub (local.get $size) (local.get $have))
          (i32.le_u (local.get $have) (i32.sub (local.get $size) (local.get $have)))))
      (local.set $have (i32.shl (local.get $have) (i32.const 1)))
      (br $double)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (local.get $size))))
)
