package render

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestEventsCarryContainer(t *testing.T) {
	var js bytes.Buffer
	ew := NewEventWriter(&js, true, Clock{})
	ev := hostileEvent("nginx")
	ew.SetContainer(ev.NetNS, "3f4e5d", "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012")
	if err := ew.Write(ev); err != nil {
		t.Fatal(err)
	}
	other := *ev
	other.NetNS++
	if err := ew.Write(&other); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(js.Bytes()), []byte("\n"))
	var in, out map[string]any
	if len(lines) != 2 || json.Unmarshal(lines[0], &in) != nil || json.Unmarshal(lines[1], &out) != nil {
		t.Fatalf("not two JSON events:\n%s", js.Bytes())
	}
	if in["container_id"] != "3f4e5d" || in["pod_uid"] != "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012" {
		t.Errorf("event in the container's namespace: %v", in)
	}
	if _, ok := out["container_id"]; ok {
		t.Errorf("event in another namespace has a container: %v", out)
	}
}
