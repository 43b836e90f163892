#!/usr/bin/env bash
# Writes the seed inputs of the fuzz harnesses into tests/tmp/fuzz-seeds/<target>/, from the project's own
# fixtures and small files made with ./hgrn2 (prepare, train, export). Run from anywhere; `make fuzz`
# runs it after building ./hgrn2. Text comes from $HGRN2_SHARED/data (default ../shared) when present.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x ./hgrn2 ] || { echo "seeds.sh: ./hgrn2 is not built (make)"; exit 1; }
SHARED=${HGRN2_SHARED:-../shared}
OUT=tests/tmp/fuzz-seeds
WORK=tests/tmp/fuzz-seeds-work
rm -rf "$OUT" "$WORK"
for t in json safetensors tokenizer shard checkpoint cls_checkpoint jsonl examples image jpegs; do mkdir -p "$OUT/$t"; done
mkdir -p "$WORK"

# Some text: a piece of a shared corpus, else a generated one.
text=$WORK/text.txt
if [ -f "$SHARED/data/text/canterbury-alice29.txt" ]; then
    head -c 3000 "$SHARED/data/text/canterbury-alice29.txt" >"$text"
    head -c 70000 "$SHARED/data/text/tinyshakespeare.txt" >"$WORK/long.txt"
else
    for i in $(seq 1 100); do echo "Line $i: the quick brown fox jumps over the lazy dog."; done >"$text"
    for i in $(seq 1 1400); do echo "Line $i: the quick brown fox jumps over the lazy dog."; done >"$WORK/long.txt"
fi
printf 'Unicode: naïve café, Ærøskøbing, 東京, \xF0\x9F\x98\x80, a lone \xFF byte, tabs\tand\r\nCRLF.\n' >>"$text"

# ---- shards: byte-level (u16 tokens), two frames, GPT-2 ids, an empty text ----
./hgrn2 prepare --task text --input "$text" --tokenizer byte --out "$WORK/byte" --val-fraction 0.1 --threads 1 >/dev/null
./hgrn2 prepare --task text --input "$WORK/long.txt" --tokenizer byte --out "$WORK/long" --val-fraction 0 --threads 1 >/dev/null
cp "$WORK/byte/train_000000.shard" "$OUT/shard/byte_train.shard"
cp "$WORK/byte/val_000000.shard" "$OUT/shard/byte_val.shard"
cp "$WORK/long/train_000000.shard" "$OUT/shard/two_frames.shard"
if [ -f "$SHARED/data/tokenizers/gpt2/encoder.json" ]; then
    ./hgrn2 prepare --task text --input "$text" --tokenizer "$SHARED/data/tokenizers/gpt2" --out "$WORK/gpt2" \
        --val-fraction 0 --threads 1 >/dev/null
    cp "$WORK/gpt2/train_000000.shard" "$OUT/shard/gpt2.shard"
fi

# ---- a tiny model: its checkpoint (with the optimizer state) and its safetensors in three dtypes ----
./hgrn2 train --task text --data "$WORK/byte" --out "$WORK/run" --steps 1 --layers 1 --dim 4 --expand-ratio 2 \
    --mlp-width 4 --tie-embeddings --batch 1 --seq-len 8 --threads 1 >/dev/null
cp "$WORK/run/model.ckpt" "$OUT/checkpoint/tiny_tied.ckpt"
./hgrn2 train --task text --data "$WORK/byte" --out "$WORK/run2" --steps 1 --layers 2 --dim 4 --expand-ratio 4 \
    --mlp-width 4 --no-lower-bound --batch 1 --seq-len 8 --threads 1 >/dev/null
cp "$WORK/run2/model.ckpt" "$OUT/checkpoint/tiny_untied.ckpt"
for dt in f32 bf16 f16; do
    ./hgrn2 export --ckpt "$WORK/run/model.ckpt" --hf "$WORK/hf_$dt" --dtype $dt >/dev/null
    cp "$WORK/hf_$dt/model.safetensors" "$OUT/safetensors/tiny_$dt.safetensors"
done
cp "$WORK/hf_f32/config.json" "$OUT/json/config.json"

# ---- classifiers' checkpoints: BatchNorm (running statistics) on one document, LayerNorm on a pair, patches ----
./hgrn2 generate --task listops --out "$WORK/lo" --train-size 8 --val-size 1 --test-size 1 >/dev/null
./hgrn2 prepare --task lra-listops --input "$WORK/lo" --out "$WORK/lo_ex" >/dev/null
./hgrn2 train --task lra-listops --data "$WORK/lo_ex" --out "$WORK/cls1" --steps 1 --layers 1 --dim 4 --expand-ratio 2 \
    --batch 2 --seq-len 8 --threads 1 >/dev/null
cp "$WORK/cls1/model.ckpt" "$OUT/cls_checkpoint/listops_batchnorm.ckpt"
mkdir -p "$WORK/aan"
for s in train eval test; do
    printf '1\ta\tb\tone paper\tanother paper\n0\tc\td\tthird\tfourth\n' >"$WORK/aan/new_aan_pairs.$s.tsv"
done
./hgrn2 prepare --task lra-retrieval --input "$WORK/aan" --out "$WORK/aan_ex" >/dev/null
./hgrn2 train --task lra-retrieval --data "$WORK/aan_ex" --out "$WORK/cls2" --steps 1 --layers 1 --dim 4 --expand-ratio 2 \
    --glu-ratio 1 --norm layer --batch 2 --seq-len 8 --threads 1 >/dev/null
cp "$WORK/cls2/model.ckpt" "$OUT/cls_checkpoint/retrieval_layernorm.ckpt"
# an image model in 4 x 4 patches (version 3's patch field, the grid of 32 x 32 images)
./hgrn2 generate --task pathfinder --size 32 --count 20 --seed 2 --out "$WORK/pf_raw" >/dev/null
./hgrn2 prepare --task lra-pathfinder --input "$WORK/pf_raw" --out "$WORK/pf_ex" >/dev/null
./hgrn2 train --task lra-pathfinder --data "$WORK/pf_ex" --out "$WORK/cls3" --steps 1 --layers 1 --dim 4 --expand-ratio 2 \
    --patch 4 --batch 2 --threads 1 >/dev/null
cp "$WORK/cls3/model.ckpt" "$OUT/cls_checkpoint/pathfinder_patch4.ckpt"

# ---- example files: ListOps (one document), Retrieval (a pair), Pathfinder's pixels (one frame each) ----
cp "$WORK/lo_ex/train.examples" "$OUT/examples/listops_train.examples"
cp "$WORK/lo_ex/val.examples" "$OUT/examples/listops_val.examples"
cp "$WORK/aan_ex/train.examples" "$OUT/examples/retrieval_pairs.examples"
cp "$WORK/pf_ex/train.examples" "$OUT/examples/pathfinder_pixels.examples"
# several frames: 3,000 short expressions (a frame closes at 16 KiB of records)
./hgrn2 generate --task listops --out "$WORK/lo_many" --train-size 3000 --val-size 1 --test-size 1 --min-len 1 --max-len 12 \
    >/dev/null
./hgrn2 prepare --task lra-listops --input "$WORK/lo_many" --out "$WORK/lo_many_ex" >/dev/null
cp "$WORK/lo_many_ex/train.examples" "$OUT/examples/listops_frames.examples"
# inputs that describe a file for the harness to build (tests/fuzz/fuzz_examples.c): 2-byte tokens, vocabulary
# 20, 10 classes, documents of up to 8 tokens; one frame of one example (label 3, tokens 1 2 3), then two
# frames of two pairs each with 4-byte tokens
printf '\x00\x13\x00\x09\x08\x00\x00\x00''\x00\x0e\x00''\x03\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00' \
    >"$OUT/examples/built_one.in"
rec='\x01\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00\x02\x00\x00\x00\x06\x00\x00\x00\x07\x00\x00\x00'
printf "\\x03\\x13\\x00\\x01\\x08\\x00\\x00\\x01\\x01\\x30\\x00$rec$rec\\x01\\x30\\x00$rec$rec" >"$OUT/examples/built_pairs.in"

# ---- images: a byte that picks the decoder (even, '0': JPEG; odd, '1': PNG), then the file. The JPEGs of
# tests/fixtures/jpeg were written with libjpeg-turbo: RGB baseline, progressive, grayscale, Adobe CMYK ----
for f in tests/fixtures/jpeg/*.jpg; do
    { printf '0'; cat "$f"; } >"$OUT/image/$(basename "$f" .jpg).in"
done
for k in 0 1; do
    f=$(find "$WORK/pf_raw/imgs" -name "sample_$k.png" | head -n 1)
    { printf '1'; cat "$f"; } >"$OUT/image/pathfinder_$k.in"
done

# ---- ImageNet's JPEG example files, from the fixture JPEGs: the folder layout (class names) and lists (none);
# a build without libjpeg cannot prepare them and leaves the target without seeds ----
J=tests/fixtures/jpeg
mkdir -p "$WORK/in/train/n01" "$WORK/in/train/n02" "$WORK/in/val/n01" "$WORK/in/val/n02"
cp "$J/rgb_baseline_16x8.jpg" "$WORK/in/train/n01/a.JPEG"; cp "$J/gray_8x8.jpg" "$WORK/in/train/n01/b.JPEG"
cp "$J/rgb_progressive_17x9.jpg" "$WORK/in/train/n02/c.JPEG"; cp "$J/cmyk_8x8.jpg" "$WORK/in/val/n02/d.JPEG"
cp "$J/rgb_baseline_16x8.jpg" "$WORK/in/val/n01/e.JPEG"
printf 'train/n01/a.JPEG 0\ntrain/n02/c.JPEG 2\n' >"$WORK/in/train.txt"
printf 'val/n02/d.JPEG 1\n' >"$WORK/in/val.txt"
if ./hgrn2 prepare --task imagenet --input "$WORK/in" --out "$WORK/in_ex" --short-side 12 --threads 1 >/dev/null 2>&1 &&
   ./hgrn2 prepare --task imagenet --train-list "$WORK/in/train.txt" --val-list "$WORK/in/val.txt" --classes 3 \
       --out "$WORK/in_list" --threads 1 >/dev/null 2>&1; then
    cp "$WORK/in_ex/train.jpegs" "$OUT/jpegs/folder_train.jpegs"
    cp "$WORK/in_ex/val.jpegs" "$OUT/jpegs/folder_val.jpegs"
    cp "$WORK/in_list/train.jpegs" "$OUT/jpegs/list_train.jpegs"
fi

# A safetensors file by hand: integer and float64 tensors, a scalar, an empty tensor and metadata.
st_by_hand() {   # st_by_hand FILE HEADER DATA_BYTES
    local n=${#2} le='' i
    for i in 0 1 2 3 4 5 6 7; do le+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done
    { printf "$le"; printf '%s' "$2"; head -c "$3" /dev/zero; } >"$1"
}
st_by_hand "$OUT/safetensors/dtypes.safetensors" \
    '{"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[1,1],"data_offsets":[16,24]},"c":{"dtype":"I32","shape":[],"data_offsets":[24,28]},"d":{"dtype":"BF16","shape":[0,3],"data_offsets":[28,28]},"e":{"dtype":"F16","shape":[2,1,2],"data_offsets":[28,36]}}' 36

# ---- JSON: the header of a safetensors file, small tokenizer.json files, snippets of every construct ----
hlen=$(od -An -tu8 -N8 "$OUT/safetensors/tiny_f32.safetensors" | tr -d ' ')
dd if="$OUT/safetensors/tiny_f32.safetensors" of="$OUT/json/safetensors_header.json" bs=1 skip=8 count="$hlen" status=none
i=0
while IFS= read -r line; do
    i=$((i + 1)); printf '%s' "$line" >"$OUT/json/snippet_$i.json"
done <<'JSON'
{}
[]
{"a": 1, "b": [true, false, null], "c": "x", "d": {"e": -0.5e-3, "f": 1E+10, "g": 0}}
"escapes: \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 \u0000 end"
[1, -1, 0.0, 123456789012345678901234567890, 1e-400, 1e400, -0]
{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": []}
[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{"deep": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
{"dup": 1, "dup": 2, "": "empty key", "k\u0000ey": "nul in a key"}
  	 {"ws" :	[ 1 , 2 ] }  
JSON

# tokenizer inputs are a tokenizer.json, a NUL byte, then a text to encode.
cat >"$WORK/tok_bytelevel.json" <<'JSON'
{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"c":4,"abc":6},"merges":["a b",["ab","c"]]},"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},"decoder":{"type":"ByteLevel"},"added_tokens":[{"id":7,"content":"<|endoftext|>","special":true}]}
JSON
cat >"$WORK/tok_sentencepiece.json" <<'JSON'
{"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null,"model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x41>":3,"<0x0A>":4,"▁":5,"a":6,"b":7,"▁a":8},"merges":["▁ a"]},"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},"added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}]}
JSON
cat >"$WORK/tok_metaspace.json" <<'JSON'
{"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true},"model":{"type":"BPE","byte_fallback":true,"vocab":{"<unk>":0,"<0x41>":1,"▁":2,"x":3,"y":4,"▁x":5,"xy":6},"merges":[["▁","x"],"x y"],"ignore_merges":true,"dropout":null},"decoder":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true},"added_tokens":[]}
JSON
for f in "$WORK"/tok_*.json tests/fixtures/tokenizer/*.json; do
    [ -f "$f" ] || continue
    cp "$f" "$OUT/json/$(basename "$f")"
    { cat "$f"; printf '\0'; head -c 400 "$text"; printf 'ab abc xy A <|endoftext|> <s>\n'; } \
        >"$OUT/tokenizer/$(basename "$f" .json).in"
done

# ---- JSON Lines: records, escapes, blank and malformed lines ----
cat >"$OUT/jsonl/records.jsonl" <<'JSONL'
{"text": "Hello, world!", "meta": {"pile_set_name": "Pile-CC"}}
{"meta": {"a": [1, 2, {"b": null}]}, "text": "escapes \" \\ \/ \n \u00e9 \ud83d\ude00 \u0000"}

{"text": ""}
   {"text":"leading blanks"}   
{"text": 12}
{"no_text": "x"}
{"text": "a", "text": "b"}
{"text": "unterminated
not json at all
{"text": "trailing"} extra
["text", "an array"]
JSONL
printf '{"text": "no newline at the end"}' >"$OUT/jsonl/no_newline.jsonl"
printf '{"text": "crlf"}\r\n{"text": "two"}\r\n' >"$OUT/jsonl/crlf.jsonl"

for t in json safetensors tokenizer shard checkpoint cls_checkpoint jsonl examples image jpegs; do
    printf '%-12s %3d seeds\n' "$t" "$(ls "$OUT/$t" | wc -l)"
done | tr '\n' ' '
echo "-> $OUT"
