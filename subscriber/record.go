package subscriber

import (
	"encoding/json"
	"fmt"

	"github.com/groupcast/groupcast/channelgroups"
)

// record is one shard-log entry. Kind "e" is a membership edit; messages
// will share the log with kind "m".
type record struct {
	Kind     string                  `json:"k"`
	Account  channelgroups.Account   `json:"a"`
	Group    channelgroups.Group     `json:"g,omitempty"`
	Op       channelgroups.Op        `json:"o,omitempty"`
	Channels []channelgroups.Channel `json:"c,omitempty"`
	At       channelgroups.Timetoken `json:"t"`
}

// EncodeEdit is the log record of an edit, as Announce appends it.
func EncodeEdit(e channelgroups.Edit) []byte {
	b, _ := json.Marshal(record{Kind: "e", Account: e.Account, Group: e.Group, Op: e.Op, Channels: e.Channels, At: e.At})
	return b
}

func decodeRecord(b []byte, shard int) (channelgroups.Edit, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return channelgroups.Edit{}, fmt.Errorf("subscriber: bad log record: %w", err)
	}
	if r.Kind != "e" {
		return channelgroups.Edit{}, fmt.Errorf("subscriber: unknown log record kind %q", r.Kind)
	}
	return channelgroups.Edit{Account: r.Account, Group: r.Group, Shard: shard, Op: r.Op, Channels: r.Channels, At: r.At}, nil
}
