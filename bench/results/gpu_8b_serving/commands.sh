export CUDA_VISIBLE_DEVICES=0 NCCL_NVLS_ENABLE=0
T0=$SECONDS
source scripts/device/build.sh fastserve >/tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
echo "build $((SECONDS - T0)) s"
timeout 150 build-cuda/fastserve profile --device cuda --load-format dummy --model llama-3-8b \
  --tokenizer tests/fixtures/tokenizer/smollm2-vocab.gguf --prefill-lengths 16,64,256,512,1024,2048 \
  --batch-sizes 1,2,4,8,16,32,64,128,256 --contexts 128,1024 --repeat 3 -o $OUT/profile.json >/tmp/profile.log 2>&1
echo "profile exit $? at $((SECONDS - T0)) s"; tail -30 /tmp/profile.log
bash scripts/device/gpu_serving.sh $OUT/serving --no-build --shapes llama-3-8b \
  --policies skip-join-mlfq,fcfs,vllm \
  --server-args "--max-num-seqs 32 --device-kv-blocks 1024 --host-kv-blocks 4096 --cost-model $OUT/profile.json" \
  --num-prompts 200 --sat-prompts 96 --fractions 0.6,0.9,1.2 --max-output-len 512 \
  --deadline-s $((560 - (SECONDS - T0)))
echo "done at $((SECONDS - T0)) s"
