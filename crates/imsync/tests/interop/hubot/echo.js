// The script the interop test's Hubot runs: it hears "ping <word>" in any room it is in and
// answers "pong <word>" there.
module.exports = (robot) => {
  robot.hear(/^ping (\S+)$/i, (res) => {
    robot.logger.info(`heard ping ${res.match[1]} in ${res.message.room}`)
    res.send(`pong ${res.match[1]}`)
  })
}
