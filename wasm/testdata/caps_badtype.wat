;; caps_badtype: imports kv_get of the wrong type.
(module
  (import "dataflare" "kv_get" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"name\":\"caps_badtype\",\"version\":\"1.0.0\",\"api_version\":\"1.0\"}")
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 61)))
  (func (export "df_alloc") (param $size i32) (result i32) (i32.const 0))
  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (i64.extend_i32_u (call $f (i32.const 0))))
)
