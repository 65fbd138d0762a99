;; missing_export: has every ABI export but df_process.
(module
  (memory (export "memory") 1)
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64) (i64.const 0))
  (func (export "df_alloc") (param i32) (result i32) (i32.const 1024))
)
