#!/usr/bin/env bash
# import reads config.json field by field: every integer must be a whole number in range, every boolean
# true or false; anything else is refused with one message naming the field and the value, exit 1.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
FIX=tests/fixtures/fla/hf

expect 0 "import of the reference model" -- $H import --hf "$FIX" --out "$TMP/ok.ckpt"

# A copy of the reference model with one edit to config.json (a sed expression), then import.
n=0
import_edited() {
    local what=$1 edit=$2 want=$3
    n=$((n + 1))
    local dir="$TMP/hf$n"
    mkdir -p "$dir"
    ln -sf "$PWD/$FIX/model.safetensors" "$dir/model.safetensors"
    sed -E "$edit" "$FIX/config.json" > "$dir/config.json"
    cmp -s "$FIX/config.json" "$dir/config.json" && { fail "$what: the edit did not apply"; return; }
    expect 1 "import with $what" -- $H import --hf "$dir" --out "$TMP/bad.ckpt" && expect_msg "$want"
}
import_edited "num_heads 0.5 and no expand_ratio" 's/"expand_ratio": 16/"expand_ratio": null/; s/"num_heads": 4/"num_heads": 0.5/' \
    "num_heads must be an integer in \[1, 65536\], got 0.5"
import_edited "num_heads 0 and no expand_ratio" 's/"expand_ratio": 16/"expand_ratio": null/; s/"num_heads": 4/"num_heads": 0/' \
    "num_heads must be an integer"
import_edited "num_heads not dividing hidden_size" 's/"expand_ratio": 16/"expand_ratio": null/; s/"num_heads": 4/"num_heads": 5/' \
    "num_heads 5 does not divide hidden_size 64"
import_edited "a fractional vocab_size" 's/"vocab_size": 300/"vocab_size": 256.7/' "vocab_size must be an integer in \[2, 16777216\], got 256.7"
import_edited "vocab_size 1e300" 's/"vocab_size": 300/"vocab_size": 1e300/' "vocab_size must be an integer in \[2, 16777216\], got 1e+300"
import_edited "vocab_size as a string" 's/"vocab_size": 300/"vocab_size": "300"/' "vocab_size must be an integer .*, got a string"
import_edited "a negative hidden_size" 's/"hidden_size": 64/"hidden_size": -64/' "hidden_size must be an integer in \[1, 65536\], got -64"
import_edited "num_hidden_layers true" 's/"num_hidden_layers": 3/"num_hidden_layers": true/' "num_hidden_layers must be an integer .*, got true"
import_edited "expand_ratio 16.5" 's/"expand_ratio": 16/"expand_ratio": 16.5/' "expand_ratio must be an integer .*, got 16.5"
import_edited "intermediate_size 2^40" 's/"intermediate_size": null/"intermediate_size": 1099511627776/' \
    "intermediate_size must be an integer in \[1, 1048576\], got 1099511627776"
import_edited "intermediate_size 0" 's/"intermediate_size": null/"intermediate_size": 0/' "intermediate_size must be an integer"
import_edited "hidden_ratio 1e30" 's/"hidden_ratio": 4/"hidden_ratio": 1e30/' "hidden_ratio must be a number in \[0.001, 1024\], got 1e+30"
import_edited "tie_word_embeddings 7" 's/"tie_word_embeddings": false/"tie_word_embeddings": 7/' "tie_word_embeddings must be true or false, got 7"
import_edited "tie_word_embeddings 1" 's/"tie_word_embeddings": false/"tie_word_embeddings": 1/' "tie_word_embeddings must be true or false, got 1"
import_edited "use_lower_bound \"yes\"" 's/"use_lower_bound": true/"use_lower_bound": "yes"/' "use_lower_bound must be true or false, got a string"
import_edited "use_short_conv 0" 's/"use_short_conv": false/"use_short_conv": 0/' "use_short_conv must be true or false, got 0"
import_edited "elementwise_affine 1" 's/"elementwise_affine": true/"elementwise_affine": 1/' "elementwise_affine must be true or false"
import_edited "norm_eps 0" 's/"norm_eps": 1e-06/"norm_eps": 0/' "norm_eps must be a number in (0, 1), got 0"
import_edited "norm_eps 2" 's/"norm_eps": 1e-06/"norm_eps": 2/' "norm_eps must be a number in \[0, 1\], got 2"
checks=$((checks + 1))
[ ! -e "$TMP/bad.ckpt" ] && ok "no refused import wrote a checkpoint" || fail "a refused import left $TMP/bad.ckpt"

# null is the default, as fla writes it: no expand_ratio but num_heads gives the same model
import_edited_ok() {
    n=$((n + 1)); local dir="$TMP/hf$n"; mkdir -p "$dir"
    ln -sf "$PWD/$FIX/model.safetensors" "$dir/model.safetensors"
    sed -E "$2" "$FIX/config.json" > "$dir/config.json"
    expect 0 "import with $1" -- $H import --hf "$dir" --out "$TMP/ok$n.ckpt"
}
import_edited_ok "expand_ratio null and num_heads 4" 's/"expand_ratio": 16/"expand_ratio": null/'
import_edited_ok "a whole number written as 300.0" 's/"vocab_size": 300/"vocab_size": 300.0/'
finish
