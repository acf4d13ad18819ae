// A serverless.yml plugin: packaging stops, naming `make package`, unless infra/lambda_build.py
// has built the provider's bundle (.build/lambda/<provider>, its marker written last). Without
// it the framework would print "Service packaged" and ship a zip without FastAPI or any other
// dependency. It runs before `serverless package`, `serverless deploy` without --package (which
// packages first) and `serverless deploy function`; `serverless offline` packages nothing.
import { existsSync } from "node:fs";
import path from "node:path";

const MARKER = ".requirements"; // infra/lambda_build.py's MARKER

export default class LambdaBundle {
  constructor(serverless) {
    const check = () => {
      const provider = serverless.service.custom.provider;
      const folder = path.join(".build", "lambda", provider);
      if (existsSync(path.join(serverless.serviceDir, folder, MARKER))) return;
      throw new serverless.classes.Error(
        `No Lambda bundle for provider "${provider}": ${folder} is missing or incomplete, and ` +
          "the package would lack FastAPI and every other dependency.\nPackage with " +
          `\`make package PROVIDER=${provider}\` (STAGE= and REGION= as you deploy), then deploy ` +
          "that package: `npx serverless deploy --package .serverless` (docs/deploy-lambda.md).",
        "RELAY_LAMBDA_BUNDLE_MISSING",
      );
    };
    this.hooks = {
      "before:package:cleanup": check,
      "before:package:function:package": check,
    };
  }
}
