# Sourced by the benchmark scripts that train on real data: Debian's fortunes (English
# text) and dataset-fashion-mnist (idx files). Sets `fashion` (the Fashion-MNIST directory)
# and `text` ($out_dir/fortunes.txt: the English fortune files as one text, the .dat
# indexes and .u8 links left out); exits 2 naming the package when one is missing.
# Needs `out_dir` set.
fortunes=/usr/share/games/fortunes
fashion=/usr/share/datasets/fashion-mnist
for needed in "$fortunes/literature" "$fashion/train-images-idx3-ubyte.gz"; do
  [ -e "$needed" ] || { echo "missing $needed: apt-get install fortunes dataset-fashion-mnist" >&2; exit 2; }
done
mkdir -p "$out_dir"
text="$out_dir/fortunes.txt"
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' | sort | xargs cat > "$text"
