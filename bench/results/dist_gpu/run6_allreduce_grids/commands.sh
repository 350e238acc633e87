export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
source scripts/device/build.sh fastserve nccl_allreduce_bench >/tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
timeout 90 mpirun -np 2 --bind-to none build-cuda/bench/nccl_allreduce_bench --batches 1,4,16,32,64,128,256 --p2p-blocks 16,64,132 | tee $OUT/allreduce_grids.md
P=$(seq -s, 100 227)
for large in 0 4096; do
  FASTSERVE_P2P_ALLREDUCE_LARGE_MAX_KB=$large timeout 120 mpirun -np 2 --bind-to none -x FASTSERVE_P2P_ALLREDUCE_LARGE_MAX_KB build-cuda/fastserve generate --device cuda --json --load-format dummy --model llama-3-8b --tokenizer tests/fixtures/tokenizer/smollm2-vocab.gguf --prompt-ids $P --max-tokens 16 --ignore-eos --tp 2 2>/tmp/gen_$large.log | grep '^{' > $OUT/gen_large_$large.json
  grep -h "all-reduce" /tmp/gen_$large.log | head -2
done
python3 -c "
import json; a=json.load(open('$OUT/gen_large_0.json')); b=json.load(open('$OUT/gen_large_4096.json'))
print('tokens equal', a['token_ids']==b['token_ids'], 'logprobs equal', a['logprobs']==b['logprobs'])"

# Then, in the same warm machine (one device call): TP=2 throughput with the two grids on
# (FASTSERVE_P2P_ALLREDUCE_MAX_KB=64 FASTSERVE_P2P_ALLREDUCE_LARGE_MAX_KB=4096, now the defaults):
#   scale_checks.throughput(fastserve, ['llama-3-8b:tp2'], log, res, 256, 256, 1000)
# -> 1000/1000 in 9.695 s, 21,099 output tok/s, mean TPOT 38.5 ms (was 19,885 and 40.7 ms with
#    NCCL above 256 KB, run5_lamport/throughput.md; one run each).
