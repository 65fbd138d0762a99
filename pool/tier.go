package pool

import "strconv"

// Tier is one of the pool's five buffer sizes. A Get is served from the
// smallest tier whose size is at least the size asked for.
type Tier int

// The five tiers, smallest first.
const (
	Tiny   Tier = iota // 256 B
	Small              // 4 KiB
	Medium             // 64 KiB
	Large              // 1 MiB
	Huge               // 4 MiB
)

// NumTiers is the number of tiers; Tier values run from 0 to NumTiers-1.
const NumTiers = 5

// MaxSize is the size of the largest tier. A Get for more than MaxSize bytes
// is served by a plain allocation and counted as oversize.
const MaxSize = 4 << 20

var tierSizes = [NumTiers]int{256, 4 << 10, 64 << 10, 1 << 20, 4 << 20}

var tierNames = [NumTiers]string{"tiny", "small", "medium", "large", "huge"}

// Size reports the capacity of every buffer of tier t, or 0 for a Tier
// outside [0, NumTiers).
func (t Tier) Size() int {
	if t < 0 || t >= NumTiers {
		return 0
	}
	return tierSizes[t]
}

// String returns the tier's name ("tiny", "small", "medium", "large",
// "huge"), or "tier(N)" for a Tier outside [0, NumTiers).
func (t Tier) String() string {
	if t < 0 || t >= NumTiers {
		return "tier(" + strconv.Itoa(int(t)) + ")"
	}
	return tierNames[t]
}

// TierFor returns the smallest tier that holds size bytes, and false when
// size is larger than MaxSize. A negative size is treated as 0.
func TierFor(size int) (Tier, bool) {
	switch {
	case size <= 256:
		return Tiny, true
	case size <= 4<<10:
		return Small, true
	case size <= 64<<10:
		return Medium, true
	case size <= 1<<20:
		return Large, true
	case size <= 4<<20:
		return Huge, true
	default:
		return -1, false
	}
}
