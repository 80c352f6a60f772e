// AudioWorklet: the microphone's float samples → 16-bit mono PCM frames of ~100 ms.
//
// The page creates its AudioContext at 16 kHz when the browser allows it (the browser then
// resamples the microphone); otherwise at the device's rate, which the page declares in the
// content type so that the endpoint resamples. Each frame goes to the page with its level.

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.buffer = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.emit();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) {
      return true; // no input connected yet
    }
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let sample = 0;
      for (const channel of channels) {
        sample += channel[i];
      }
      sample = Math.max(-1, Math.min(1, sample / channels.length));
      this.buffer[this.filled++] = Math.round(sample < 0 ? sample * 0x8000 : sample * 0x7fff);
      this.sumSquares += sample * sample;
      if (this.filled === this.frameSamples) {
        this.emit();
      }
    }
    return true;
  }

  emit() {
    if (this.filled === 0) {
      return;
    }
    const pcm = this.buffer.slice(0, this.filled).buffer;
    const rms = Math.sqrt(this.sumSquares / this.filled);
    this.port.postMessage({ pcm, samples: this.filled, rms }, [pcm]);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("pcm-frames", PcmFrames);
