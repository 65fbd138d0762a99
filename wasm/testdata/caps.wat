;; caps: calls the capabilities of host module "dataflare" as each record's
;; value says, well and badly, and returns what the host answered. A value
;; is one command byte and an argument (the rest of the value):
;;
;;   g KEY   kv_get of KEY in bucket "users", room for 1,024 bytes
;;   s KEY   the same with room for 2 bytes: the host writes nothing
;;   d KEY   kv_get in bucket "secret"
;;   p KEY   the bucket name at a pointer past the end of memory
;;   k KEY   a key length of 2^31-1
;;   o KEY   the output region running past the end of memory
;;   O KEY   an output capacity of 2^32-1 at address 0
;;   L KEY   kv_get in a loop that never ends
;;   G KEY   kv_get 100,000 times
;;   l MSG   log MSG at level info
;;   m MSG   log from a pointer past the end of memory
;;   v MSG   log at level 9
;;   B MSG   log MSG 1,000 times
;;
;; Each result is the host's last answer as 4 bytes, little-endian (for B,
;; the number of lines written), followed for g by the value read.
(module
  (import "dataflare" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "dataflare" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $in_cap (mut i32) (i32.const 0))
  (data (i32.const 16) "{\"name\":\"caps\",\"version\":\"1.0.0\",\"type\":\"enricher\",\"description\":\"calls the capabilities\",\"api_version\":\"1.0\"}")
  (data (i32.const 512) "users")
  (data (i32.const 520) "secret")

  (func (export "df_abi_version") (result i32) (i32.const 1))

  ;; (16 << 32) | length of the JSON above.
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 110)))

  (func (export "df_alloc") (param $size i32) (result i32)
    (local $pages i32) (local $need i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $size) (i32.const 65535)) (i32.const 16)))
    (local.set $need (i32.add (i32.const 2) (i32.mul (local.get $pages) (i32.const 3))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $in_cap (i32.shl (local.get $pages) (i32.const 16)))
    (i32.const 65536))

  ;; run executes the command of one value at $v, $vlen bytes, and returns
  ;; the host's answer.
  (func $run (param $v i32) (param $vlen i32) (result i32)
    (local $cmd i32) (local $arg i32) (local $alen i32) (local $r i32) (local $i i32) (local $n i32)
    (if (i32.eqz (local.get $vlen)) (then (return (i32.const -100))))
    (local.set $cmd (i32.load8_u (local.get $v)))
    (local.set $arg (i32.add (local.get $v) (i32.const 1)))
    (local.set $alen (i32.sub (local.get $vlen) (i32.const 1)))
    (if (i32.eq (local.get $cmd) (i32.const 103)) ;; g
      (then (return (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 1024)))))
    (if (i32.eq (local.get $cmd) (i32.const 115)) ;; s
      (then (return (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 2)))))
    (if (i32.eq (local.get $cmd) (i32.const 100)) ;; d
      (then (return (call $kv_get (i32.const 520) (i32.const 6) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 1024)))))
    (if (i32.eq (local.get $cmd) (i32.const 112)) ;; p
      (then (return (call $kv_get (i32.const 0x7ffffff0) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 1024)))))
    (if (i32.eq (local.get $cmd) (i32.const 107)) ;; k
      (then (return (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (i32.const 0x7fffffff) (i32.const 1024) (i32.const 1024)))))
    (if (i32.eq (local.get $cmd) (i32.const 111)) ;; o
      (then (return (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen)
        (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 2)) (i32.const 1024)))))
    (if (i32.eq (local.get $cmd) (i32.const 79)) ;; O
      (then (return (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 0) (i32.const -1)))))
    (if (i32.eq (local.get $cmd) (i32.const 76)) ;; L
      (then (loop $forever
        (drop (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 1024)))
        (br $forever))))
    (if (i32.eq (local.get $cmd) (i32.const 71)) ;; G
      (then
        (local.set $i (i32.const 100000))
        (loop $again
          (local.set $r (call $kv_get (i32.const 512) (i32.const 5) (local.get $arg) (local.get $alen) (i32.const 1024) (i32.const 1024)))
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $again (local.get $i)))
        (return (local.get $r))))
    (if (i32.eq (local.get $cmd) (i32.const 108)) ;; l
      (then (return (call $log (i32.const 1) (local.get $arg) (local.get $alen)))))
    (if (i32.eq (local.get $cmd) (i32.const 109)) ;; m
      (then (return (call $log (i32.const 1) (i32.const 0x7ffffff0) (i32.const 100)))))
    (if (i32.eq (local.get $cmd) (i32.const 118)) ;; v
      (then (return (call $log (i32.const 9) (local.get $arg) (local.get $alen)))))
    (if (i32.eq (local.get $cmd) (i32.const 66)) ;; B
      (then
        (local.set $i (i32.const 1000))
        (loop $again
          (if (i32.eqz (call $log (i32.const 1) (local.get $arg) (local.get $alen)))
            (then (local.set $n (i32.add (local.get $n) (i32.const 1)))))
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $again (local.get $i)))
        (return (local.get $n))))
    (i32.const -101))

  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (local $count i32) (local $off i32) (local $out i32) (local $o i32)
    (local $klen i32) (local $vlen i32) (local $hcount i32) (local $v i32)
    (local $r i32) (local $n i32)
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
        (local.set $r (call $run (local.get $v) (local.get $vlen)))
        ;; the value read, for g when it fit
        (local.set $n (i32.const 0))
        (if (i32.and
              (i32.eq (i32.load8_u (local.get $v)) (i32.const 103))
              (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.le_s (local.get $r) (i32.const 1024))))
          (then (local.set $n (local.get $r))))
        ;; entry: status 0, length 4 + n, the answer, the value
        (i32.store (local.get $o) (i32.const 0))
        (i32.store offset=4 (local.get $o) (i32.add (i32.const 4) (local.get $n)))
        (i32.store offset=8 (local.get $o) (local.get $r))
        (memory.copy (i32.add (local.get $o) (i32.const 12)) (i32.const 1024) (local.get $n))
        (local.set $o (i32.add (i32.add (local.get $o) (i32.const 12)) (local.get $n)))
        ;; skip the value and the headers
        (local.set $off (i32.add (local.get $v) (local.get $vlen)))
        (block $hdone
          (loop $headers
            (br_if $hdone (i32.eqz (local.get $hcount)))
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
