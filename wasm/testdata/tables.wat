;; tables: three tables: one declaring a maximum below its share of the table
;; bound (kept as is), one with no maximum, one externref table with no
;; maximum (both given one); otherwise a valid plugin.
(module
  (table $small 10 20 funcref)
  (table $open 100 funcref)
  (table $ext 5 externref)
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"name\":\"tables\",\"version\":\"1.0.0\",\"api_version\":\"1.0\"}")
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 55)))
  ;; the input region is page 1 (and more pages as needed)
  (func (export "df_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 2) (i32.shr_u (i32.mul (local.get $size) (i32.const 2)) (i32.const 16))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size))))))
    (i32.const 65536))
  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 0))
)
